package connio

import (
	"syscall"
	"unsafe"
)

// PeekSupported reports whether Peeker works here: Linux has
// MSG_PEEK|MSG_DONTWAIT. Elsewhere a connection keeps its read buffer
// while idle.
const PeekSupported = true

// Peeker is the syscall.RawConn.Read callback of a buffer-less wait for an
// idle socket; keep one per connection (it holds the peeked byte).
type Peeker struct{ buf [1]byte }

// Ready reports true once the socket has a byte to read, an end of stream
// or an error (the read that follows returns it), false while it would
// block (the runtime then parks the goroutine until the socket is
// readable or the read deadline passes). recvfrom with MSG_DONTWAIT never
// blocks, so it is a raw syscall: no scheduler hand-off, and a shallow
// stack for the waiting goroutine.
func (p *Peeker) Ready(fd uintptr) bool {
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.buf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		return errno != syscall.EAGAIN
	}
}
