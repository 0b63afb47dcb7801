package connio

import (
	"net"
	"syscall"

	"github.com/meshgate/meshgate/meshgate/rawio"
)

// RawConn returns the socket of a plain TCP connection (a *net.TCPConn or
// a rawio.Conn) for the buffer-less wait (Peeker), or nil when there is
// none: TLS and other wrapped connections, or no Peeker on this system.
func RawConn(nc net.Conn) syscall.RawConn {
	tc, ok := rawio.TCP(nc)
	if !ok || !PeekSupported {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
