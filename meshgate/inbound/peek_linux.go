package inbound

import "syscall"

// peekSupported: Linux has MSG_PEEK|MSG_DONTWAIT for the buffer-less wait
// (idle.go).
const peekSupported = true

// peek is the syscall.RawConn.Read callback of the buffer-less wait: true
// once the socket has a byte to read, an end of stream or an error (the
// read that follows returns it), false while it would block (the runtime
// then parks the goroutine until the socket is readable or the read
// deadline passes).
func (c *conn) peek(fd uintptr) bool {
	for {
		_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		return err != syscall.EAGAIN
	}
}
