package grpcserve

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendQueueEmpty reports whether the socket has sent, and had
// acknowledged, everything written to it (SIOCOUTQ is 0): a small write
// then fits its send buffer without blocking. The ioctl is a raw syscall,
// like the socket's reads and writes (package rawio).
func sendQueueEmpty(rc syscall.RawConn) bool {
	q := int32(-1)
	_ = rc.Control(func(fd uintptr) {
		var v int32
		if _, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, fd, unix.SIOCOUTQ, uintptr(unsafe.Pointer(&v))); e == 0 {
			q = v
		}
	})
	return q == 0
}
