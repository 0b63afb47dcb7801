package inbound

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/codec"
)

// An idle connection holds no read buffer.
//
// On a plain TCP connection the read goroutine waits for the next frame
// without a buffer: syscall.RawConn.Read parks it on the netpoller until
// the socket is readable (a callback peeks at one byte with
// MSG_PEEK|MSG_DONTWAIT and reports EAGAIN as "not yet"); only then does
// the connection take a frame reader (codec.Reader with its readBase
// buffer) from the Server's pool. It gives the reader back as soon as a
// frame has been handled and no further byte is buffered, so a connection
// holds a read buffer only while bytes are arriving. The wait honours the
// socket's read deadline, which is armed exactly as before a socket read
// (deadlineReader): idle timeout, drain quiet period.
//
// Other connections (TLS, which buffers inside crypto/tls, and anything
// that is not a *net.TCPConn) keep one reader for their whole life.

// readerBox is a pooled frame reader; src names the connection using it.
type readerBox struct {
	src boxSrc
	rd  *codec.Reader
}

// boxSrc is the byte source of a pooled reader: the connection's socket
// through its deadlines, or errParked while the reader sits in the pool.
type boxSrc struct{ c *conn }

// errParked is what a pooled reader reads when no connection holds it.
var errParked = errors.New("inbound: frame reader parked")

func (s boxSrc) Read(p []byte) (int, error) {
	if s.c == nil {
		return 0, errParked
	}
	return deadlineReader(s).Read(p)
}

// newReaderBox is the Server's reader pool's New.
func (s *Server) newReaderBox() any {
	b := &readerBox{}
	b.rd = codec.NewReader(&b.src, s.codec, readBase)
	return b
}

// rawConn returns the socket of a plain TCP connection for the buffer-less
// wait, or nil when the connection keeps a reader for its life.
func rawConn(nc net.Conn) syscall.RawConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok || !peekSupported {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// nextFrame reads the next frame into f, first waiting without a buffer
// for the socket to be readable when the connection holds no reader.
func (c *conn) nextFrame(f *codec.Frame) error {
	if c.rd == nil {
		if err := c.await(); err != nil {
			return err
		}
	}
	return c.rd.ReadFrame(f)
}

// await parks until the socket is readable (or the read deadline, armed
// as for a read, passes) and then takes a reader from the pool.
func (c *conn) await() error {
	c.frameStart = time.Time{}
	c.armRead(time.Now())
	if err := c.raw.Read(c.peekFn); err != nil {
		return err
	}
	c.box = c.s.readers.Get().(*readerBox)
	c.box.src.c = c
	c.rd = c.box.rd
	c.s.held.Add(1)
	return nil
}

// parkReader gives a pooled reader back once the frame in f has been
// handled and nothing more is buffered; f's views of the buffer are
// dropped. A reader holding bytes stays (they are the next frame's).
func (c *conn) parkReader(f *codec.Frame) {
	if c.box == nil || c.rd.Buffered() != 0 {
		return
	}
	b := c.box
	c.rd, c.box = nil, nil
	c.s.held.Add(-1)
	b.src.c = nil
	// With no connection behind it, ReadFrame only returns a buffer grown
	// for a large frame to the codec's pool and fails with errParked.
	_ = b.rd.ReadFrame(f)
	f.Body = nil
	clear(f.Ext[:cap(f.Ext)])
	c.s.readers.Put(b)
}

// dropReader lets go of the reader when the connection ends: parked
// when it is empty, else left to the garbage collector with the bytes it
// holds.
func (c *conn) dropReader(f *codec.Frame) {
	c.parkReader(f)
	if c.box != nil {
		c.rd, c.box = nil, nil
		c.s.held.Add(-1)
	}
}

// buffered is how many bytes are read but not yet decoded.
func (c *conn) buffered() int {
	if c.rd == nil {
		return 0
	}
	return c.rd.Buffered()
}
