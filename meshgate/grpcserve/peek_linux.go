package grpcserve

import (
	"syscall"
	"unsafe"
)

// peekSupported: Linux has MSG_PEEK|MSG_DONTWAIT for the buffer-less wait
// (idle.go).
const peekSupported = true

// peek is the syscall.RawConn.Read callback of the buffer-less wait: true
// once the socket has a byte to read, an end of stream or an error (the
// read that follows returns it), false while it would block (the runtime
// parks the goroutine until the socket is readable). recvfrom with
// MSG_DONTWAIT never blocks, so it is a raw syscall.
func (c *conn) peek(fd uintptr) bool {
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		return errno != syscall.EAGAIN
	}
}
