package inbound

import (
	"syscall"
	"unsafe"
)

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
