package inbound

import (
	"errors"
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
// The goroutine that waits is a small one. A goroutine starts with a
// 2 KB stack; handling frames (decode, route, dispatch, a heartbeat's
// reply, re-arming the read deadline) grows it to 4 KB, and the GC never
// shrinks a stack parked in the netpoller (it shrinks only stacks less
// than a quarter used, counting an 800-byte reserve). So when a
// connection goes idle, the goroutine that handled its frames arms the
// idle deadline and ends, and a fresh goroutine parks in the wait (goIdle,
// idleWait): the wait itself (RawConn.Read and a raw recvfrom) stays
// within the initial stack. Cost: one goroutine start (and one stack
// growth) per burst of frames, about 1.5 µs; no allocation.
//
// Other connections (TLS, which buffers inside crypto/tls, and anything
// that is not a *net.TCPConn) keep one reader and one goroutine for their
// whole life.

// readerBox is a pooled frame reader and the frame it decodes into (the
// frame aliases the reader's buffer); src names the connection using it.
type readerBox struct {
	src boxSrc
	rd  *codec.Reader
	f   codec.Frame
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

// idleLinger is how long a connection that just went idle waits for its
// next frame on the goroutine that handled the last one before handing
// the wait to a fresh goroutine (goIdle): starting that goroutine wakes
// an idle thread (two context switches), which a connection with frames a
// few milliseconds apart would otherwise pay per frame.
const idleLinger = 20 * time.Millisecond

// linger waits up to idleLinger on the current goroutine for the next
// frame (see idleLinger); true when bytes arrived and the connection has
// its reader again. Not while draining (the drain quiet period applies)
// or with an idle timeout not longer than idleLinger.
func (c *conn) linger() bool {
	if c.s.draining.Load() || c.idle <= idleLinger {
		return false
	}
	c.frameStart = time.Time{}
	dl := time.Now().Add(idleLinger)
	c.dmu.Lock()
	c.rdl = dl
	_ = c.nc.SetReadDeadline(dl)
	c.dmu.Unlock()
	if c.raw.Read(c.peekFn) != nil {
		return false // the linger passed (or the socket closed: the idle wait says so)
	}
	c.takeReader()
	return true
}

// goIdle hands the wait for the next frame to a fresh goroutine: the
// idle deadline is armed here (arming it goes deep into the runtime's
// timer code), and the new goroutine only parks until the socket is
// readable, so its stack stays at the initial 2 KB while the connection
// is idle. The current goroutine, whose stack the request path has grown
// (to 4 KB typically, which the GC cannot shrink while it is parked in
// the netpoller), ends.
func (c *conn) goIdle() {
	c.frameStart = time.Time{}
	c.armRead(time.Now())
	c.s.waits.Add(1)
	go c.waitFn()
}

// idleWait is the goroutine of an idle connection: it parks until the
// socket is readable (or the read deadline passes) without a buffer, then
// takes a reader and runs the connection.
func (c *conn) idleWait() {
	if err := c.raw.Read(c.peekFn); err != nil {
		reason, rerr, again := c.readFailed(err)
		if !again {
			c.close(reason, rerr)
			return
		}
		c.run() // re-arms the deadline and waits again
		return
	}
	c.takeReader()
	c.run()
}

// takeReader gives the connection a reader from the pool.
func (c *conn) takeReader() {
	c.box = c.s.readers.Get().(*readerBox)
	c.box.src.c = c
	c.rd = c.box.rd
	c.s.held.Add(1)
}

// parkReader gives a pooled reader back once its frame has been handled
// and nothing more is buffered (plain TCP only); the frame's views of the
// buffer are dropped. A reader holding bytes stays (they are the next
// frame's).
func (c *conn) parkReader() {
	if c.raw == nil || c.box == nil || c.rd.Buffered() != 0 {
		return
	}
	c.putReader()
}

func (c *conn) putReader() {
	b := c.box
	c.rd, c.box = nil, nil
	c.s.held.Add(-1)
	b.src.c = nil
	// With no connection behind it, ReadFrame only returns a buffer grown
	// for a large frame to the codec's pool and fails with errParked.
	_ = b.rd.ReadFrame(&b.f)
	b.f.Body = nil
	clear(b.f.Ext[:cap(b.f.Ext)])
	c.s.readers.Put(b)
}

// dropReader lets go of the reader when the connection ends: back to the
// pool when it is empty, else left to the garbage collector with the
// bytes it holds.
func (c *conn) dropReader() {
	if c.box == nil {
		return
	}
	if c.rd.Buffered() == 0 {
		c.putReader()
		return
	}
	c.rd, c.box = nil, nil
	c.s.held.Add(-1)
}

// buffered is how many bytes are read but not yet decoded.
func (c *conn) buffered() int {
	if c.rd == nil {
		return 0
	}
	return c.rd.Buffered()
}
