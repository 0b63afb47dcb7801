package grpcserve

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/meshgate/meshgate/meshgate/connio"
)

// A waiting connection holds no read buffer, and an idle one no
// goroutine: on a plain TCP connection (Linux) the bytes are read
// through a reader whose buffer (readBuffer) comes from a pool while
// bytes arrive and goes back once every buffered byte has been handled;
// the wait for the next frame parks on the netpoller without a buffer
// (syscall.RawConn.Read with a callback that peeks at one byte,
// MSG_PEEK|MSG_DONTWAIT). After Config.IdleGrace without frames the
// housekeeping timer interrupts that wait (a read deadline in the past),
// the connection drops what its next frames can rebuild (shrink), and
// the reading goroutine, whose stack handling frames has grown, hands
// the wait to the server's parker (connio.Parker: an epoll set of the
// server's own, no goroutine per connection) and ends; when the socket
// becomes readable a fresh goroutine takes the connection over
// (idleWait). Where the parker is unavailable a fresh goroutine (2 KB
// stack) does the wait. Cost per burst of frames: one peek syscall; per
// wake-up after IdleGrace, two epoll_ctl and one goroutine start. TLS
// connections (crypto/tls buffers inside) and other net.Conns keep their
// buffer and goroutine.

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBuffer); return &b }}

// connReader is the Framer's source: a buffered reader of the
// connection whose buffer is pooled.
type connReader struct {
	src  net.Conn
	held *atomic.Int64 // the server's count of buffers held
	buf  *[]byte
	r, w int
	keep bool // hold the buffer for the connection's life
	// intr: read deadlines are only the idle interrupt (after the
	// handshake, plain TCP): one that hits a read within a frame is
	// cleared and the read retried.
	intr bool
	// batch is flushed before every read of the socket (connio.Batch)
	batch *connio.Batch
}

func (cr *connReader) Read(p []byte) (int, error) {
	if cr.r < cr.w {
		n := copy(p, (*cr.buf)[cr.r:cr.w])
		cr.r += n
		return n, nil
	}
	if len(p) >= readBuffer { // a large payload: straight into it
		return cr.read(p)
	}
	if cr.buf == nil {
		cr.buf = readBufPool.Get().(*[]byte)
		cr.held.Add(1)
	}
	n, err := cr.read(*cr.buf)
	cr.r, cr.w = 0, n
	if n > 0 {
		m := copy(p, (*cr.buf)[:n])
		cr.r = m
		return m, nil
	}
	return 0, err
}

// read reads the socket; a deadline within a frame is cleared and the
// read retried (only the idle interrupt sets one).
func (cr *connReader) read(p []byte) (int, error) {
	if cr.batch.Pending() {
		cr.batch.Flush()
	}
	for {
		n, err := cr.src.Read(p)
		if n > 0 {
			return n, nil
		}
		if err == nil || !cr.intr || !isTimeout(err) {
			return n, err
		}
		_ = cr.src.SetReadDeadline(time.Time{})
	}
}

// empty reports whether no read byte is waiting.
func (cr *connReader) empty() bool { return cr.r >= cr.w }

// release gives the buffer back when it holds nothing.
func (cr *connReader) release() {
	if cr.buf != nil && !cr.keep && cr.r >= cr.w {
		readBufPool.Put(cr.buf)
		cr.buf, cr.r, cr.w = nil, 0, 0
		cr.held.Add(-1)
	}
}

// awaitBytes waits without a read buffer until the socket of a plain TCP
// connection is readable (at once otherwise): a connection that has just
// been accepted holds no buffer until its client sends its preface, so a
// burst of connections being opened costs no burst of buffers.
func (c *conn) awaitBytes() error {
	if c.raw == nil || !c.br.empty() {
		return nil
	}
	c.br.release()
	return c.raw.Read(c.peekFn)
}

// shrink drops, when the connection parks after Config.IdleGrace (reading
// goroutine, no stream open), what its next frames can rebuild:
//   - the Framer (its payload buffer is as large as the largest frame it
//     read); the HPACK decoder, which mirrors the client's header table,
//     is kept in c.hdec, and made to let go of the last header block it
//     decoded (a slice of that buffer);
//   - the HPACK encoder and its dynamic table (c.henc is nil while
//     parked: only a stream's reply, or the reading goroutine, encode
//     headers); the encoder made on wake-up starts its first header block
//     with table size updates 0 and the size in force, which empty the
//     client's copy of the table (RFC 7541 §4.2, §6.3);
//   - the header block scratch buffer, and the stream map.
//
// They are made again (a few hundred bytes) when the next frame arrives
// (wake); a connection in use never parks and keeps them.
func (c *conn) shrink() {
	c.hdec, c.fr = c.fr.ReadMetaHeaders, nil
	// The decoder keeps the slice it decoded last; one indexed field of
	// the static table (no table change, emitted to a no-op; the Framer
	// sets its own callback per header block) moves it off the read
	// buffer.
	c.hdec.SetEmitFunc(discardField)
	_, _ = c.hdec.Write(staticField[:])
	_ = c.hdec.Close()
	c.lockWrite()
	c.mu.Lock()
	// The wait can end in its deadline after the reader went on to open
	// streams (the interrupt was armed while it handled frames): replies
	// of open streams need the encoder.
	idle := len(c.streams) == 0
	if idle {
		c.streams = nil
	}
	c.mu.Unlock()
	if idle && c.henc != nil {
		c.hencLim = c.henc.MaxDynamicTableSize()
		c.henc, c.hbuf.b = nil, nil
	}
	c.sqFn = nil
	c.unlockWrite()
}

// staticField is an HPACK indexed header field of the static table
// (":method: GET").
var staticField = [1]byte{0x82}

func discardField(hpack.HeaderField) {}

// wake rebuilds what shrink dropped, if it did, and re-arms the
// housekeeping timer (reading goroutine, before it reads the frames that
// woke it).
func (c *conn) wake() {
	if c.fr == nil {
		c.fr, c.hdec = c.newFramer(c.hdec), nil
	}
	c.lockWrite()
	if c.henc == nil {
		c.henc = hpack.NewEncoder(&c.hbuf)
		c.henc.SetMaxDynamicTableSizeLimit(c.hencLim)
		c.henc.SetMaxDynamicTableSize(0)
		c.henc.SetMaxDynamicTableSize(c.hencLim)
	}
	c.unlockWrite()
	// While parked the housekeeping timer was set for the idle or age
	// limits only: re-arm it so that a wake-up without a stream (a PING,
	// SETTINGS) parks again after IdleGrace.
	now := time.Now()
	c.mu.Lock()
	if c.timer != nil && !c.closed {
		d := c.nextCheck(now)
		c.timerDue = now.Add(d)
		c.timer.Reset(d)
	}
	c.mu.Unlock()
}

// idleWait is the goroutine of an idle connection, started by the
// parker when its socket became readable (or, without the parker, when
// it parked): it waits until the socket is readable without a buffer,
// then reads frames (run); a closed socket ends the connection. The
// buffer-less wait has no deadline (idle connections are closed by the
// housekeeping timer: max_connection_idle).
func (c *conn) idleWait() {
	err := c.raw.Read(c.peekFn)
	c.parked.Store(false)
	c.wake()
	if err != nil {
		c.end(err)
		return
	}
	c.run()
}

// park hands the wait of c (reading goroutine, about to end) to the
// server's parker (connio.Parker: one epoll set per server, no goroutine
// per connection); false: not possible (the caller waits on a
// goroutine). Ownership: whoever takes the connection out of the parker
// (an event of its socket, or closeNow before it closes the socket)
// starts its idleWait.
func (c *conn) park() bool {
	if !c.s.park.Park(&c.pk) {
		return false
	}
	// closeNow sets closed before it looks for the connection in the
	// parker: one that closed meanwhile is not left behind (whichever of
	// the two takes it out starts its idleWait).
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		c.s.park.Unpark(&c.pk)
	}
	return true
}
