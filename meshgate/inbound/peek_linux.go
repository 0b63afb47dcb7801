package inbound

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
// then parks the goroutine until the socket is readable or the read
// deadline passes). recvfrom with MSG_DONTWAIT never blocks, so it is a
// raw syscall: no scheduler hand-off, and a shallow stack for the idle
// goroutine.
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

// writeRaw is the syscall.RawConn.Write callback of replyNow's
// non-blocking write (async.go): one write(2) of c.wnow on the
// non-blocking socket, never waiting for it to become writable.
func (c *conn) writeRaw(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(c.wnow))), uintptr(len(c.wnow)))
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			c.wnowN, c.wnowErr = 0, errno
		} else {
			c.wnowN, c.wnowErr = int(n), nil
		}
		return true
	}
}
