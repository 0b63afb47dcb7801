package inbound

import (
	"errors"
	"os"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
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
// takes a reader and runs the connection. After Options.IdleGrace it
// hands the wait to the listener's parker and ends (park).
func (c *conn) idleWait() {
	var err error
	if g, dl, ok := c.armGrace(); ok {
		err = c.raw.Read(c.peekFn)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			if c.park(g, dl) {
				return
			}
			err = c.raw.Read(c.peekFn) // the wait goes on here
		}
	} else {
		err = c.raw.Read(c.peekFn)
	}
	if err != nil {
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

// An idle connection holds no goroutine (Linux, plain TCP): after
// Options.IdleGrace (default 200 ms) in the buffer-less wait, the wait
// goroutine hands the socket to the listener's parker (connio.Parker: one
// epoll set per listener, waited for by one goroutine) and ends. The
// grace is the wait's read deadline (armGrace); the idle deadline that
// was armed (idle timeout, with its slack) becomes the parked wait's
// deadline (parkDL), kept by one timer per connection (made on its first
// park, reset on each): at parkDL the timer takes the connection out of
// the parker. Whoever takes it out (an event of the socket: bytes, the
// client's close; the timer; a drain nudge; the end of the connection's
// context, which every close of the socket follows) starts unparked,
// which re-arms parkDL as the read deadline and waits as before, so a
// readable socket is read, a passed deadline is the idle timeout (or,
// draining, the quiet period), and a closed socket ends the connection.
// A connection parks only with nothing buffered in its reader (it has
// none: a frame's bytes are read up to its end under the read timeout),
// not while draining and not when the deadline is less than a grace away.
// Cost per wake-up against a waiting goroutine: two epoll_ctl, one
// goroutine start, a timer reset and two read deadlines (docs/performance.md).

// defaultIdleGrace is Options.IdleGrace's default: a client sending a
// frame at least every 200 ms never pays the wake-up, and a heartbeat
// client (one frame every 30 to 60 s) is parked for more than 99 % of its
// life.
const defaultIdleGrace = 200 * time.Millisecond

// armGrace arms the read deadline of the buffer-less wait to end after
// IdleGrace (g), unless parking is off, the server is draining or the
// armed deadline (dl) is less than two graces away; ok: armed.
func (c *conn) armGrace() (g, dl time.Time, ok bool) {
	grace := c.s.opts.IdleGrace
	if grace < 0 || !connio.ParkSupported || c.s.draining.Load() {
		return g, dl, false
	}
	now := time.Now()
	c.dmu.Lock()
	defer c.dmu.Unlock()
	dl, g = c.rdl, now.Add(grace)
	if dl.Sub(g) < grace {
		return g, dl, false
	}
	_ = c.nc.SetReadDeadline(g)
	c.rdl = g
	return g, dl, true
}

// park hands the wait to the listener's parker when the grace (g) has
// passed; false: not possible (a drain nudge re-armed the deadline, the
// server is draining, the connection ended, the parker refused), and the
// caller waits on with the deadline dl (or the nudged one).
func (c *conn) park(g, dl time.Time) bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !c.rdl.Equal(g) {
		return false // drainNudge armed its own deadline
	}
	if !c.s.draining.Load() && c.ctx.Err() == nil && time.Now().Before(dl) {
		c.parkDL, c.parked = dl.UnixNano(), true
		if c.s.park.Park(&c.pk) {
			if c.ptimer == nil {
				c.ptimer = time.AfterFunc(time.Until(dl), c.parkTimeout)
			} else {
				c.ptimer.Reset(time.Until(dl))
			}
			return true
		}
		c.parked = false
	}
	_ = c.nc.SetReadDeadline(dl)
	c.rdl = dl
	return false
}

// unparked is the wake of a parked connection (a goroutine of its own,
// started by whoever took it out of the parker): the read deadline of the
// parked wait is armed again, and the wait goes on (idleWait) and finds
// the socket readable, closed, or its deadline passed.
func (c *conn) unparked() {
	c.dmu.Lock()
	c.parked = false
	c.ptimer.Stop()
	c.rdl = time.Unix(0, c.parkDL)
	_ = c.nc.SetReadDeadline(c.rdl)
	c.dmu.Unlock()
	c.s.waits.Add(1)
	c.idleWait()
}

// parkTimeout ends the parked wait at its deadline (the timer's func). A
// timer that fired as the connection was woken otherwise may wake its
// next parked wait early: that wait then simply goes on.
func (c *conn) parkTimeout() { c.s.park.Unpark(&c.pk) }

// ended runs when the connection's context ends (every close of its
// socket follows): requests in flight on the I/O goroutines are
// cancelled (async.go), and a parked connection is taken out of the
// parker, so that its wait ends (the socket is closed, or a timed-out
// drain goes on).
func (c *conn) ended() {
	c.async.cancel()
	c.dmu.Lock()
	if c.parked {
		c.s.park.Unpark(&c.pk)
	}
	c.dmu.Unlock()
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
