package grpcserve

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sendQueueEmpty reports whether the socket has sent, and had
// acknowledged, everything written to it (SIOCOUTQ is 0): a small write
// then fits its send buffer without blocking.
func sendQueueEmpty(rc syscall.RawConn) bool {
	q := -1
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			q = v
		}
	})
	return q == 0
}
