package connio

import (
	"net"
	"syscall"
)

// RawConn returns the socket of a plain TCP connection for the
// buffer-less wait (Peeker), or nil when the connection must keep a read
// buffer for its life (TLS, another kind of connection, or PeekSupported
// false).
func RawConn(nc net.Conn) syscall.RawConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok || !PeekSupported {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
