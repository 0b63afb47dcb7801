//go:build linux

package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

const supported = true

// op is one direction's state: the buffer and result of the RawConn
// callback, which is a method value made once per connection (fn), so a
// call allocates nothing. mu serialises callers of one direction (net.Conn
// allows concurrent calls; the runtime's fd lock is taken inside RawConn).
type op struct {
	mu  sync.Mutex
	fn  func(uintptr) bool
	buf []byte
	n   int
	err syscall.Errno
}

func (o *op) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(o.buf))), uintptr(len(o.buf)))
		switch e {
		case 0:
			o.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		default:
			o.err = e
			return true
		}
	}
}

func (o *op) write(fd uintptr) bool {
	for len(o.buf) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(o.buf))), uintptr(len(o.buf)))
		switch e {
		case 0:
			o.n += int(n)
			o.buf = o.buf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until writable, then go on
		default:
			o.err = e
			return true
		}
	}
	return true
}

// Read reads like (*net.TCPConn).Read: io.EOF at the end of the stream,
// *net.OpError otherwise (deadlines: os.ErrDeadlineExceeded; closed:
// net.ErrClosed).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		// As *net.TCPConn: at once, but net.ErrClosed once closed.
		if err := c.rc.Read(readNothing); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, c.opErr("read", err)
		}
		return 0, nil
	}
	n, err := c.do(&c.r, p, false)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of p like (*net.TCPConn).Write, waiting for the socket
// to become writable as often as needed.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return c.do(&c.w, p, true)
}

// do runs one direction's callback over p and returns what it did, errors
// as *net.OpError.
func (c *Conn) do(o *op, p []byte, write bool) (int, error) {
	name := "read"
	o.mu.Lock()
	o.buf, o.n, o.err = p, 0, 0
	var err error
	if write {
		name = "write"
		err = c.rc.Write(o.fn)
	} else {
		err = c.rc.Read(o.fn)
	}
	n, errno := o.n, o.err
	o.buf = nil
	o.mu.Unlock()
	switch {
	case err != nil:
		return n, c.opErr(name, err)
	case errno != 0:
		return n, c.opErr(name, os.NewSyscallError(name, errno))
	}
	return n, nil
}

// readNothing is the RawConn callback of a zero-length Read.
func readNothing(uintptr) bool { return true }

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
