package grpcdirect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/grpcwire"
)

// errRefused: the stream was never processed by the server (GOAWAY above
// its last stream id, REFUSED_STREAM, or the conn was unusable before the
// stream was sent); the call may be retried on another connection.
var errRefused = errors.New("grpcdirect: stream refused")

// acceptEncoding is the grpc-accept-encoding of every request: the
// compressors a response may use (decompress), as grpc-go's client
// announces the ones registered.
const acceptEncoding = "gzip"

const (
	defaultWindow   = 65535
	defaultMaxFrame = 16384
	ioBuffer        = 32 << 10
	maxHeaderList   = 16 << 20
	// maxContinuations bounds the CONTINUATION frames of one header
	// block: four times what the largest block takes in full frames.
	maxContinuations = 4 * maxHeaderList / defaultMaxFrame
	// unlimitedStreams stands for "no SETTINGS_MAX_CONCURRENT_STREAMS"
	// (grpc-go servers send none by default).
	unlimitedStreams = 1 << 31
)

// conn is one HTTP/2 connection. Callers write their streams under wmu;
// whoever holds the read role (read.go) is the only reader.
type conn struct {
	e    *Endpoint
	nc   net.Conn
	peer peer.Peer

	wmu    sync.Mutex // write side: bw, dw, fr writes, henc, hbuf, nextID
	bw     *bufio.Writer
	dw     deadlineWriter // what bw flushes into
	fr     *http2.Framer
	henc   *hpack.Encoder
	hbuf   headerBuf
	nextID uint32
	// ctlPending: a PING ack is buffered, not yet flushed
	ctlPending bool
	// the deferred ack's flush timer (ackPing), armed: pending
	ackTimer *time.Timer
	ackArmed bool
	wqueued  atomic.Int32 // request writers waiting for wmu (lockWrite)

	mu          sync.Mutex
	streams     map[uint32]*call
	active      uint32
	maxStreams  uint32
	waiters     []chan struct{}
	connWin     int64 // send window
	initWin     int64 // peer's initial stream window
	maxFrame    uint32
	winCh       chan struct{} // closed and replaced when send windows grow
	winWanted   bool          // a writer holds winCh (so winWakeLocked replaces it)
	goAway      bool
	goAwayID    uint32
	err         error
	unusableSet bool

	// the deadline timer of async calls (async.go), under mu
	dlAt      time.Time
	dlTimer   *time.Timer
	asyncUsed bool // an async call was started here

	unusable chan struct{} // closed on GOAWAY or death: no new streams
	dead     chan struct{} // closed when the conn is closed
	noStream atomic.Bool   // fast check of goAway || err

	// the read role (read.go), under mu
	rstate     int
	leaderCall *call
	yield      bool
	bgWake     chan struct{}
	lastLead   atomic.Int64 // unix nanos a caller last released the read role

	kickFn func() // c.kick, bound once (lead)

	// read-role holder only
	br *bufio.Reader
	// rb: the read role's write batch (answers completed by the reader,
	// connio.Batch), flushed before a socket read and when the role is
	// given up
	rb          connio.Batch
	hdec        *hpack.Decoder
	hst         hdrState
	hblock      []byte // a header block continued in CONTINUATION frames
	hframes     int    // CONTINUATION frames of the block so far
	hstream     uint32
	hend        bool
	hcall       *call // the block's stream, nil if not open
	hsize       int
	htrunc      bool
	connUnacked uint32
	lastRead    atomic.Int64 // unix nanos of the last frame read
	pingAcked   atomic.Bool
}

// deadlineWriter writes to the connection with a write deadline armed
// with slack: at now + T + T/8 whenever less than T is left, so a write
// that blocks for T (at most 9/8·T) fails with a timeout, without
// re-arming the runtime timer on every write. Used under wmu only.
type deadlineWriter struct {
	nc    net.Conn
	t     time.Duration
	until time.Time // the deadline armed; zero: none
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); w.until.Sub(now) < w.t {
		w.until = now.Add(w.t + w.t/8)
		_ = w.nc.SetWriteDeadline(w.until)
	}
	return w.nc.Write(p)
}

// headerBuf is the HPACK encoder's output buffer.
type headerBuf struct{ b []byte }

func (h *headerBuf) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

func newConn(e *Endpoint, nc net.Conn) *conn {
	c := &conn{
		e: e, nc: nc,
		dw:         deadlineWriter{nc: nc, t: e.cfg.WriteTimeout},
		nextID:     1,
		streams:    make(map[uint32]*call),
		maxStreams: 100, // set from the server's first SETTINGS in handshake
		connWin:    defaultWindow,
		initWin:    defaultWindow,
		maxFrame:   defaultMaxFrame,
		winCh:      make(chan struct{}),
		unusable:   make(chan struct{}),
		dead:       make(chan struct{}),
		bgWake:     make(chan struct{}, 1),
	}
	c.kickFn = c.kick
	c.bw = bufio.NewWriterSize(&c.dw, ioBuffer)
	c.peer = peer.Peer{Addr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr()}
	c.br = bufio.NewReaderSize(connio.FlushingReader{R: nc, B: &c.rb}, ioBuffer)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(defaultMaxFrame) // we announce the default SETTINGS_MAX_FRAME_SIZE
	c.hdec = hpack.NewDecoder(4096, c.emit)
	c.hdec.SetMaxStringLength(maxHeaderList)
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// handshake sends the preface, SETTINGS and the connection window, and
// reads the server's SETTINGS.
func (c *conn) handshake(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
		defer func() {
			_ = c.nc.SetDeadline(time.Time{})
			c.dw.until = time.Time{} // cleared: the next write arms its own
		}()
	}
	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		return fmt.Errorf("grpcdirect: %s: write preface: %w", c.e.cfg.Addr, err)
	}
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: StreamWindow},
	)
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, ConnWindow-defaultWindow)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("grpcdirect: %s: write settings: %w", c.e.cfg.Addr, err)
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		return fmt.Errorf("grpcdirect: %s: read server preface: %w", c.e.cfg.Addr, err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		return fmt.Errorf("grpcdirect: %s: first frame from server is %v, not SETTINGS", c.e.cfg.Addr, f.Header().Type)
	}
	c.mu.Lock()
	c.maxStreams = unlimitedStreams // the initial value: no limit until the server sets one
	c.mu.Unlock()
	if err := c.onSettings(sf); err != nil {
		return err
	}
	c.lastRead.Store(time.Now().UnixNano())
	return nil
}

func (c *conn) usable() bool { return !c.noStream.Load() }

func (c *conn) hasRoom() bool {
	c.mu.Lock()
	ok := c.active < c.maxStreams
	c.mu.Unlock()
	return ok
}

func (c *conn) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *conn) wasGoAway() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway
}

// markUnusableLocked stops new streams (c.mu held).
func (c *conn) markUnusableLocked() {
	c.noStream.Store(true)
	if !c.unusableSet {
		c.unusableSet = true
		close(c.unusable)
	}
}

// close fails every stream with err and closes the socket (once).
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.markUnusableLocked()
	var done []*call
	for id, s := range c.streams {
		delete(c.streams, id)
		s.fail(status.New(codes.Unavailable, fmt.Sprintf("grpcdirect: connection to %s closed: %v", c.e.cfg.Addr, err)))
		// An async call's reader may be amid its header block (close is
		// not always called by the reader): its metadata is not read, and
		// it is not pooled again (async.go).
		s.abandoned = s.abandoned || s.async
		done = append(done, s)
	}
	c.active = 0
	c.waiters = nil // they see dead
	close(c.dead)
	c.winWakeLocked()
	if c.dlTimer != nil {
		c.dlTimer.Stop()
	}
	c.mu.Unlock()
	_ = c.nc.Close()
	c.e.mu.Lock()
	delete(c.e.live, c)
	c.e.mu.Unlock()
	if err != ErrClosed && c.e.cfg.OnLost != nil {
		c.e.cfg.OnLost(LostReason(err))
	}
	for _, s := range done {
		c.deliver(s, nil)
	}
}

// acquire takes a stream slot, queueing while the server's
// MAX_CONCURRENT_STREAMS are in use. errRefused: the conn stopped taking
// streams.
func (c *conn) acquire(ctx context.Context) error {
	c.mu.Lock()
	if c.goAway || c.err != nil {
		c.mu.Unlock()
		return errRefused
	}
	if c.active < c.maxStreams {
		c.active++
		c.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	c.waiters = append(c.waiters, ch)
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-c.unusable:
	case <-ctx.Done():
	}
	c.mu.Lock()
	granted := true
	for i, w := range c.waiters {
		if w == ch {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			granted = false
			break
		}
	}
	if granted && c.err == nil {
		c.releaseLocked()
	}
	c.mu.Unlock()
	c.closeIfDrained()
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return errRefused
}

// releaseLocked frees a stream slot and grants queued callers (c.mu held).
func (c *conn) releaseLocked() {
	if c.active > 0 {
		c.active--
	}
	c.grantLocked()
}

// closeIfDrained closes a conn that got GOAWAY once its last stream ended.
func (c *conn) closeIfDrained() {
	c.mu.Lock()
	drained := c.goAway && c.err == nil && c.active == 0 && len(c.streams) == 0
	c.mu.Unlock()
	if drained {
		c.close(errDrained)
	}
}

func (c *conn) grantLocked() {
	for c.active < c.maxStreams && len(c.waiters) > 0 {
		w := c.waiters[0]
		c.waiters = c.waiters[1:]
		c.active++
		close(w)
	}
}

// roundTrip runs call cl on c: acquire a stream, write it, wait for the
// reader to complete it.
func (c *conn) roundTrip(ctx context.Context, cl *call, method string) error {
	if err := c.acquire(ctx); err != nil {
		return err
	}
	cl.c = c
	if err := c.writeRequest(ctx, cl, method); err != nil {
		return err
	}
	return c.await(ctx, cl)
}

// abandon removes cl's stream and resets it; false if the reader already
// completed it.
func (c *conn) abandon(cl *call, code http2.ErrCode) bool {
	c.mu.Lock()
	if c.streams[cl.id] != cl {
		c.mu.Unlock()
		return false
	}
	delete(c.streams, cl.id)
	cl.abandoned, cl.waiting = true, false
	c.releaseLocked()
	c.mu.Unlock()
	c.wmu.Lock()
	if c.fr.WriteRSTStream(cl.id, code) == nil {
		_ = c.bw.Flush()
	}
	c.wmu.Unlock()
	c.closeIfDrained()
	return true
}

// writeRequest writes HEADERS and the request message in DATA frames:
// what the windows allow at once, in one flush, the rest as the server
// opens them.
func (c *conn) writeRequest(ctx context.Context, cl *call, method string) error {
	c.lockWrite()
	c.mu.Lock()
	if c.err != nil || c.goAway || c.nextID > 1<<31-1 {
		if c.err == nil && !c.goAway { // stream ids exhausted
			c.markUnusableLocked()
			c.goAway = true
		}
		c.releaseLocked()
		c.mu.Unlock()
		c.unlockWrite()
		c.closeIfDrained()
		return errRefused
	}
	// As grpc-go's client: a call whose deadline has passed by the time its
	// stream would be opened fails DeadlineExceeded without being sent (a
	// server would get it already expired). The grpc-timeout sent is this
	// remaining time.
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		cl.deadline = dl
		if timeout = time.Until(dl); timeout <= 0 {
			c.releaseLocked()
			c.mu.Unlock()
			c.unlockWrite()
			return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
		}
	}
	cl.id = c.nextID
	c.nextID += 2
	cl.sendWin = c.initWin
	c.streams[cl.id] = cl
	c.mu.Unlock()

	err := c.writeHeaders(ctx, cl, method, timeout)
	for err == nil {
		var more bool
		more, err = c.writeData(cl)
		if err != nil || !more {
			break
		}
		if err = c.bw.Flush(); err != nil {
			break
		}
		// Wait for the windows without the write lock (the reader needs
		// it to answer PINGs and SETTINGS).
		c.mu.Lock()
		ch, fin := c.winCh, c.streams[cl.id] != cl
		c.winWanted = true
		c.needReaderLocked()
		c.mu.Unlock()
		c.wmu.Unlock()
		if !fin {
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
		c.lockWrite()
		if fin || ctx.Err() != nil {
			break // completed by the server, or the caller gave up (roundTrip resets it)
		}
	}
	if err == nil {
		err = c.unlockWrite()
	} else {
		c.wmu.Unlock()
	}
	if err != nil {
		c.close(fmt.Errorf("write: %w", err))
	}
	return nil // a write failure fails the stream through close
}

// lockWrite takes the write lock, counted as queued meanwhile.
func (c *conn) lockWrite() {
	c.wqueued.Add(1)
	c.wmu.Lock()
	c.wqueued.Add(-1)
}

// unlockWrite releases the write lock, flushing what is buffered unless
// another request writer is queued for the lock: the last of a burst
// flushes them all in one write.
func (c *conn) unlockWrite() error {
	var err error
	if c.wqueued.Load() == 0 && c.bw.Buffered() > 0 {
		err = c.bw.Flush()
		c.ctlPending = false
	}
	c.wmu.Unlock()
	return err
}

// writeHeaders encodes and writes the request HEADERS (c.wmu held);
// timeout is the grpc-timeout (none when zero).
func (c *conn) writeHeaders(ctx context.Context, cl *call, method string, timeout time.Duration) error {
	c.hbuf.b = c.hbuf.b[:0]
	e := c.henc
	e.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	e.WriteField(hpack.HeaderField{Name: ":scheme", Value: c.e.scheme})
	e.WriteField(hpack.HeaderField{Name: ":path", Value: method})
	e.WriteField(hpack.HeaderField{Name: ":authority", Value: c.e.cfg.Authority})
	e.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	e.WriteField(hpack.HeaderField{Name: "user-agent", Value: c.e.cfg.UserAgent})
	e.WriteField(hpack.HeaderField{Name: "te", Value: "trailers"})
	e.WriteField(hpack.HeaderField{Name: "grpc-accept-encoding", Value: acceptEncoding})
	if timeout > 0 {
		cl.tbuf = grpcwire.AppendTimeout(cl.tbuf[:0], timeout)
		// Sensitive: never indexed, so the encoder keeps no reference
		// to the value, which may alias cl.tbuf.
		e.WriteField(hpack.HeaderField{Name: "grpc-timeout", Value: unsafe.String(unsafe.SliceData(cl.tbuf), len(cl.tbuf)), Sensitive: true})
	}
	writeMetadata(e, ctx, cl.omd)
	blk := c.hbuf.b
	first := true
	for first || len(blk) > 0 {
		n := min(len(blk), int(c.maxFrameSize()))
		frag, end := blk[:n], n == len(blk)
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: cl.id, BlockFragment: frag, EndHeaders: end})
		} else {
			err = c.fr.WriteContinuation(cl.id, end, frag)
		}
		if err != nil {
			return err
		}
		blk, first = blk[n:], false
	}
	return nil
}

func (c *conn) maxFrameSize() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxFrame
}

// writeData writes as much of the request message as the windows allow
// (c.wmu held); more: some is left.
func (c *conn) writeData(cl *call) (more bool, err error) {
	for cl.sent < cl.total {
		c.mu.Lock()
		if c.streams[cl.id] != cl {
			c.mu.Unlock()
			return false, nil
		}
		n := int64(cl.total - cl.sent)
		n = min(n, c.connWin, cl.sendWin, int64(c.maxFrame))
		if n <= 0 && cl.total > 0 {
			c.mu.Unlock()
			return true, nil
		}
		c.connWin -= n
		cl.sendWin -= n
		c.mu.Unlock()
		end := cl.sent+int(n) == cl.total
		if err := cl.writeFrame(c.bw, int(n), end); err != nil {
			return false, err
		}
	}
	return false, nil
}

// handle processes one frame read by whoever holds the read role.
func (c *conn) handle(f http2.Frame) (err error) {
	c.lastRead.Store(time.Now().UnixNano())
	switch f := f.(type) {
	case *http2.DataFrame:
		err = c.onData(f)
	case *http2.HeadersFrame:
		err = c.onHeadersFrame(f.StreamID, f.StreamEnded(), f.HeadersEnded(), f.HeaderBlockFragment())
	case *http2.ContinuationFrame:
		c.hblock = append(c.hblock, f.HeaderBlockFragment()...)
		c.hframes++
		if len(c.hblock) > maxHeaderList {
			err = protocolError(errors.New("grpcdirect: header block too large"))
		} else if c.hframes > maxContinuations {
			// A block never finished in small (or empty) frames would
			// hold the connection: nothing else may be read meanwhile.
			err = protocolError(errors.New("grpcdirect: header block in too many CONTINUATION frames"))
		} else if f.HeadersEnded() {
			err = c.onHeaderBlock(c.hblock)
		}
	case *http2.RSTStreamFrame:
		c.onRST(f)
	case *http2.SettingsFrame:
		if !f.IsAck() {
			err = c.onSettings(f)
		}
	case *http2.PingFrame:
		err = c.onPing(f.IsAck(), f.Data)
	case *http2.GoAwayFrame:
		c.onGoAway(f)
	case *http2.WindowUpdateFrame:
		err = c.onWindowUpdate(f.StreamID, f.Increment)
	case *http2.PushPromiseFrame:
		// We announce SETTINGS_ENABLE_PUSH 0: a PUSH_PROMISE is a
		// connection error (RFC 9113 8.4), and its header block, left
		// undecoded, would put HPACK out of step.
		err = protocolError(errors.New("grpcdirect: PUSH_PROMISE received with push disabled"))
	}
	return err
}

// onHeadersFrame takes a HEADERS frame of stream id: a whole header block
// (endHeaders), or its first fragment (CONTINUATION frames follow).
func (c *conn) onHeadersFrame(id uint32, endStream, endHeaders bool, frag []byte) error {
	c.hstream, c.hend = id, endStream
	if endHeaders {
		return c.onHeaderBlock(frag)
	}
	c.hblock = append(c.hblock[:0], frag...)
	c.hframes = 0
	return nil
}

// onPing takes a PING: an ack of ours, or one to answer.
func (c *conn) onPing(ack bool, data [8]byte) error {
	if ack {
		c.pingAcked.Store(true)
		return nil
	}
	return c.ackPing(data)
}

// ackPing answers a PING. Read by a calling goroutine (the background one
// then waits in its select), the ack is buffered, not flushed: it leaves
// with the next request's write (a server's BDP ping arrives with nearly
// every request, and its ack would otherwise cost a write syscall each),
// or at the latest idleRead later, when the background goroutine's
// periodic check flushes it. Read by the background goroutine, it is flushed at once.
//
// Read by the background goroutine while asynchronous calls are in use
// (async.go), the ack is deferred too, and flushed at the latest idleRead
// later by the connection's ack timer (armed once per idleRead at most):
// without it every request cost the server an extra wake-up to read a
// lone ack.
func (c *conn) ackPing(data [8]byte) error {
	c.mu.Lock()
	deferred := c.rstate == rsLeader
	timed := c.rstate == rsBG && c.asyncUsed
	c.mu.Unlock()
	if !deferred && !timed {
		return c.writeControl(func() error { return c.fr.WritePing(true, data) })
	}
	c.wmu.Lock()
	err := c.fr.WritePing(true, data)
	c.ctlPending = err == nil
	if err == nil && timed && !c.ackArmed {
		c.ackArmed = true
		if c.ackTimer == nil {
			c.ackTimer = time.AfterFunc(idleRead, c.ackTimeout)
		} else {
			c.ackTimer.Reset(idleRead)
		}
	}
	c.wmu.Unlock()
	return err
}

// ackTimeout flushes a deferred PING ack that no request write carried.
func (c *conn) ackTimeout() {
	c.wmu.Lock()
	c.ackArmed = false
	c.wmu.Unlock()
	select {
	case <-c.dead:
		return
	default:
	}
	c.flushPending()
}

// flushPending flushes buffered control frames (the background goroutine).
func (c *conn) flushPending() {
	c.wmu.Lock()
	if c.ctlPending {
		c.ctlPending = false
		if err := c.bw.Flush(); err != nil {
			c.wmu.Unlock()
			c.close(fmt.Errorf("write: %w", err))
			return
		}
	}
	c.wmu.Unlock()
}

// writeControl writes and flushes one frame from the reader.
func (c *conn) writeControl(w func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := w(); err != nil {
		return err
	}
	c.ctlPending = false
	return c.bw.Flush()
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		// Values HTTP/2 forbids are a connection error (RFC 9113
		// 6.5.2): a maximum frame size of 0 would make every write loop.
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.initWin
			c.initWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
			}
		case http2.SettingMaxFrameSize:
			c.maxFrame = s.Val
		}
		return nil
	})
	c.grantLocked()
	c.winWakeLocked()
	c.mu.Unlock()
	if err != nil {
		return protocolError(fmt.Errorf("grpcdirect: bad SETTINGS: %w", err))
	}
	var tableSize uint32
	hasTable := false
	_ = f.ForeachSetting(func(s http2.Setting) error {
		if s.ID == http2.SettingHeaderTableSize {
			tableSize, hasTable = s.Val, true
		}
		return nil
	})
	return c.writeControl(func() error {
		if hasTable {
			c.henc.SetMaxDynamicTableSizeLimit(tableSize)
		}
		return c.fr.WriteSettingsAck()
	})
}

func (c *conn) onWindowUpdate(id, inc uint32) error {
	c.mu.Lock()
	if id == 0 {
		c.connWin += int64(inc)
		if c.connWin > 1<<31-1 {
			c.mu.Unlock()
			return protocolError(errors.New("grpcdirect: connection send window overflow"))
		}
	} else if s := c.streams[id]; s != nil {
		s.sendWin += int64(inc)
	}
	c.winWakeLocked()
	c.mu.Unlock()
	return nil
}

// onData appends a DATA frame to its stream's message and returns window
// credit.
func (c *conn) onData(f *http2.DataFrame) error {
	n := f.Header().Length
	c.connUnacked += n
	var upd uint32
	if c.connUnacked >= ConnWindow/4 {
		upd, c.connUnacked = c.connUnacked, 0
	}
	c.mu.Lock()
	s := c.streams[f.StreamID]
	var st *status.Status
	var streamUpd uint32
	if s != nil {
		st = s.appendData(f.Data())
		s.unacked += n
		if st == nil && !f.StreamEnded() && s.unacked >= StreamWindow/4 {
			streamUpd, s.unacked = s.unacked, 0
		}
	}
	c.mu.Unlock()
	if upd > 0 || streamUpd > 0 {
		if err := c.writeControl(func() error {
			if upd > 0 {
				if err := c.fr.WriteWindowUpdate(0, upd); err != nil {
					return err
				}
			}
			if streamUpd > 0 {
				return c.fr.WriteWindowUpdate(f.StreamID, streamUpd)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if st != nil {
		c.resetStream(f.StreamID, http2.ErrCodeCancel, st)
		return nil
	}
	if s != nil && f.StreamEnded() {
		// END_STREAM on DATA: the server sent no trailers.
		c.complete(f.StreamID, status.New(codes.Internal, "server closed the stream without sending trailers"), nil)
	}
	return nil
}

// onHeaderBlock decodes a complete header block (the HPACK state needs
// every block decoded, also of streams no longer open) and applies it to
// its stream.
func (c *conn) onHeaderBlock(b []byte) error {
	c.mu.Lock()
	s := c.streams[c.hstream]
	c.mu.Unlock()
	c.hcall, c.hsize, c.htrunc = s, 0, false
	if s != nil {
		c.hst.reset(!s.gotHeaders)
	}
	_, err := c.hdec.Write(b)
	if err == nil {
		err = c.hdec.Close()
	}
	if err != nil {
		return protocolError(fmt.Errorf("grpcdirect: HPACK: %w", err))
	}
	if s == nil {
		return nil
	}
	// Under c.mu, and only if the stream is still open: a stream ended
	// meanwhile (close from a writer, a cancel) has been handed to its
	// caller, and its call may be pooled and reused; its metadata maps
	// are written here (keepMD).
	c.mu.Lock()
	if c.streams[c.hstream] != s {
		c.mu.Unlock()
		return nil
	}
	st, done, rst := s.onHeaders(&c.hst, c.hend, c.htrunc)
	c.mu.Unlock()
	switch {
	case rst:
		c.resetStream(c.hstream, http2.ErrCodeProtocol, st)
	case done:
		c.complete(c.hstream, st, nil)
	}
	return nil
}

// emit takes one decoded header field.
func (c *conn) emit(hf hpack.HeaderField) {
	if c.hcall == nil || c.htrunc {
		return
	}
	if c.hsize += int(hf.Size()); c.hsize > maxHeaderList {
		c.htrunc = true
		return
	}
	c.hst.field(hf)
}

func (c *conn) onRST(f *http2.RSTStreamFrame) {
	code, ok := rstCodes[f.ErrCode]
	if !ok {
		code = codes.Unknown // as grpc-go: an error code HTTP/2 does not define
	}
	if f.ErrCode == http2.ErrCodeRefusedStream {
		c.complete(f.StreamID, nil, errRefused)
		return
	}
	if code == codes.Canceled {
		c.mu.Lock()
		s := c.streams[f.StreamID]
		if s != nil && !s.deadline.IsZero() && !s.deadline.After(time.Now()) {
			code = codes.DeadlineExceeded // the server enforced our grpc-timeout (as grpc-go maps it)
		}
		c.mu.Unlock()
	}
	c.complete(f.StreamID, status.New(code, fmt.Sprintf("stream terminated by RST_STREAM with error code: %v", f.ErrCode)), nil)
}

// rstCodes is grpc-go's HTTP/2 error code → gRPC code table.
var rstCodes = map[http2.ErrCode]codes.Code{
	http2.ErrCodeNo:                 codes.Internal,
	http2.ErrCodeProtocol:           codes.Internal,
	http2.ErrCodeInternal:           codes.Internal,
	http2.ErrCodeFlowControl:        codes.ResourceExhausted,
	http2.ErrCodeSettingsTimeout:    codes.Internal,
	http2.ErrCodeStreamClosed:       codes.Internal,
	http2.ErrCodeFrameSize:          codes.Internal,
	http2.ErrCodeRefusedStream:      codes.Unavailable,
	http2.ErrCodeCancel:             codes.Canceled,
	http2.ErrCodeCompression:        codes.Internal,
	http2.ErrCodeConnect:            codes.Internal,
	http2.ErrCodeEnhanceYourCalm:    codes.ResourceExhausted,
	http2.ErrCodeInadequateSecurity: codes.PermissionDenied,
	http2.ErrCodeHTTP11Required:     codes.Internal,
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.goAway = true
	c.goAwayID = f.LastStreamID
	c.markUnusableLocked()
	var refused []*call
	for id, s := range c.streams {
		if id > f.LastStreamID {
			delete(c.streams, id)
			s.err = errRefused
			refused = append(refused, s)
			if c.active > 0 {
				c.active--
			}
		}
	}
	idle := len(c.streams) == 0
	c.mu.Unlock()
	for _, s := range refused {
		c.deliver(s, nil)
	}
	if idle {
		c.close(errGoAway)
	}
}

// resetStream fails stream id with st and sends RST_STREAM.
func (c *conn) resetStream(id uint32, code http2.ErrCode, st *status.Status) {
	if c.complete(id, st, nil) {
		_ = c.writeControl(func() error { return c.fr.WriteRSTStream(id, code) })
	}
}

// winWakeLocked wakes the writers waiting for window (c.mu held): winCh
// is closed and replaced only when one took it, so a completion with no
// writer waiting allocates nothing.
func (c *conn) winWakeLocked() {
	if c.winWanted {
		close(c.winCh)
		c.winCh = make(chan struct{})
		c.winWanted = false
	}
}

// complete finishes stream id with st (or err) and hands it to its
// caller (on the reading goroutine: with its batch); false if it was not
// open.
func (c *conn) complete(id uint32, st *status.Status, err error) bool {
	c.mu.Lock()
	s := c.streams[id]
	if s == nil {
		c.mu.Unlock()
		return false
	}
	delete(c.streams, id)
	s.waiting = false
	if err != nil {
		s.err = err
	} else {
		s.finish(st)
	}
	c.releaseLocked()
	// A writer waiting for window learns the stream ended.
	c.winWakeLocked()
	c.mu.Unlock()
	c.deliver(s, &c.rb)
	c.closeIfDrained()
	return true
}

// keepalive pings after KeepaliveTime without frames from the server and
// closes the conn if nothing comes back within KeepaliveTimeout.
func (c *conn) keepalive(stop <-chan struct{}) {
	defer c.e.wg.Done()
	kt, kto := c.e.cfg.KeepaliveTime, c.e.cfg.KeepaliveTimeout
	t := time.NewTimer(kt)
	defer t.Stop()
	// fired waits for t; false: the conn or its goroutine ended.
	fired := func() bool {
		select {
		case <-stop:
			return false
		case <-c.dead:
			return false
		case <-t.C:
			return true
		}
	}
	for {
		if !fired() {
			return
		}
		idle := time.Since(time.Unix(0, c.lastRead.Load()))
		if idle < kt {
			t.Reset(kt - idle)
			continue
		}
		c.pingAcked.Store(false)
		sent := time.Now()
		if err := c.writeControl(func() error { return c.fr.WritePing(false, [8]byte{'m', 'g', 'k', 'a'}) }); err != nil {
			c.close(fmt.Errorf("keepalive ping: %w", err))
			return
		}
		t.Reset(kto)
		if !fired() {
			return
		}
		if !c.pingAcked.Load() && !time.Unix(0, c.lastRead.Load()).After(sent) {
			c.close(errLiveness)
			return
		}
		t.Reset(kt)
	}
}
