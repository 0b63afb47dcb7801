package grpcserve

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendQueueEmpty reports whether the socket's send queue is (nearly)
// empty: at most sendQueueSlack bytes written and not yet acknowledged
// (SIOCOUTQ), so a small write fits its send buffer without blocking.
// The slack admits a few control frames: a PING ack written while no
// call was open is often unacknowledged when the next reply is ready (the
// client's request crossed it on the wire; its delayed ACK comes later),
// and an exact zero sent ~95 % of sequential calls' answers to a
// goroutine of their own. The ioctl is a raw syscall, like the socket's
// reads and writes (package rawio).
func (c *conn) sendQueueEmpty() bool {
	if c.sqFn == nil {
		c.sqFn = c.probeSendQueue // a method value: made once, not per call
	}
	c.sqN = -1
	_ = c.raw.Control(c.sqFn)
	return c.sqN >= 0 && c.sqN <= sendQueueSlack
}

// probeSendQueue reads the send queue's length into c.sqN (wmu held).
func (c *conn) probeSendQueue(fd uintptr) {
	var v int32
	if _, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, fd, unix.SIOCOUTQ, uintptr(unsafe.Pointer(&v))); e == 0 {
		c.sqN = v
	}
}

// sendQueueSlack: unacknowledged bytes tolerated by sendQueueEmpty; with
// noWaitBytes it stays far inside the smallest send buffer a connected
// TCP socket has (tcp_wmem's default 16 KB, grown at connect time).
const sendQueueSlack = 1 << 10
