// Package rawio gives MeshGate's TCP sockets reads and writes that do not
// enter the Go runtime's blocking-syscall path.
//
// A *net.TCPConn reads and writes its non-blocking socket with
// syscall.Syscall, which calls the runtime's entersyscall. When every P
// has been idle long enough, the runtime's monitor thread (sysmon) sleeps
// deeply, and entersyscall wakes it; it then polls every 20 µs until the
// process is idle again. A proxy at moderate load goes idle between
// requests, so each request paid several context switches on that thread
// (measured: about 4.7 of S3's 7.4 per request) for syscalls that never
// block: the socket is non-blocking and the netpoller does the waiting.
//
// A Conn does the same read(2) and write(2) with syscall.RawSyscall inside
// syscall.RawConn's Read and Write, so the netpoller, deadlines and Close
// behave exactly as for the *net.TCPConn it embeds (every other method,
// SyscallConn and SetNoDelay included, is the embedded connection's).
// On systems other than Linux, Wrap returns the connection unchanged.
package rawio

import (
	"context"
	"net"
	"syscall"
)

// Conn is a *net.TCPConn whose Read and Write use raw syscalls.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	r  op
	w  op
}

// Wrap returns c as a *Conn when it is a *net.TCPConn (on Linux), else c.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{TCPConn: tc, rc: rc}
	rw.r.fn = rw.r.read
	rw.w.fn = rw.w.write
	return rw
}

// Dial is a plain TCP dial whose connection is wrapped (Wrap); its
// signature is grpc.WithContextDialer's.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// TCP returns the *net.TCPConn under c (a *net.TCPConn or a *Conn).
func TCP(c net.Conn) (*net.TCPConn, bool) {
	switch t := c.(type) {
	case *net.TCPConn:
		return t, true
	case *Conn:
		return t.TCPConn, true
	}
	return nil, false
}

// Listener wraps every accepted connection (Wrap).
type Listener struct{ net.Listener }

// Accept waits for the next connection and wraps it.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
