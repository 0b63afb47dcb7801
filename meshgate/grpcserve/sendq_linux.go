package grpcserve

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sendQueueEmpty reports whether the socket's send queue is (nearly)
// empty: at most sendQueueSlack bytes written and not yet acknowledged
// (SIOCOUTQ), so a small write fits its send buffer without blocking.
// The slack admits a few control frames: a PING ack written while no
// call was open is often unacknowledged when the next reply is ready (the
// client's request crossed it on the wire; its delayed ACK comes later),
// and an exact zero sent ~95 % of sequential calls' answers to a
// goroutine of their own.
func sendQueueEmpty(rc syscall.RawConn) bool {
	q := -1
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			q = v
		}
	})
	return q >= 0 && q <= sendQueueSlack
}

// sendQueueSlack: unacknowledged bytes tolerated by sendQueueEmpty; with
// noWaitBytes it stays far inside the smallest send buffer a connected
// TCP socket has (tcp_wmem's default 16 KB, grown at connect time).
const sendQueueSlack = 1 << 10
