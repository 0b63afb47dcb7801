package grpcserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/grpcwire"
)

const (
	readBuffer = 16 << 10
	// maxPingStrikes: pings tolerated under the keepalive policy before
	// GOAWAY ENHANCE_YOUR_CALM (grpc-go's value).
	maxPingStrikes = 2
)

// Reasons (label values of meshgate_grpc_protocol_errors_total).
const (
	ReasonProtocol    = "protocol"    // malformed frames, stream id misuse, flow-control violations
	ReasonRapidReset  = "rapid_reset" // too many streams reset by the client
	ReasonControl     = "control"     // too many PING/SETTINGS frames
	ReasonPing        = "too_many_pings"
	ReasonHandshake   = "handshake"    // TLS handshake, ALPN, or preface
	ReasonHeaderBlock = "header_block" // header list too large, bad HPACK
)

// conn is one HTTP/2 connection. The reading goroutine (serve) owns the
// read side; the write side is under wmu; stream bookkeeping under mu.
// Lock order: wmu, then mu (never wmu while holding mu).
type conn struct {
	s    *Server
	nc   net.Conn // the socket (closed by closeNow)
	io   net.Conn // what frames are read from and written to: nc or its TLS
	peer peer.Peer
	base context.Context // carries the peer; cancelled on close
	stop context.CancelFunc
	// callBase is base without its cancellation, the parent of the calls'
	// contexts (closeNow cancels every call itself): base's cancelCtx then
	// never keeps a map of children, nor a done channel, for the
	// connection's life.
	callBase context.Context

	// reading goroutine only
	// batch: what calls started on this goroutine left for other
	// connections' writers (Call.Batch), flushed before every read
	batch       connio.Batch
	br          *connReader
	raw         syscall.RawConn // plain TCP: the buffer-less wait (idle.go)
	peekFn      func(uintptr) bool
	peek        connio.Peeker
	parked      atomic.Bool   // the buffer-less wait holds the connection (idle.go)
	pk          connio.Parked // its place in the server's parker (idle.go)
	fr          *http2.Framer
	connUsed    int64  // connection receive window used
	connUnacked uint32 // connection window consumed, not yet granted back
	resetWin    rate
	ctlWin      rate
	lastPing    int64 // mono time of the last PING received (0: none)
	pingStrikes int
	lastRead    atomic.Int64 // UnixNano of the last frame read (keepalive)
	kaPing      time.Time    // keepalive PING sent and not answered (mu)
	wroteStream atomic.Bool  // a stream's HEADERS or DATA was written since the last PING
	hdec        *hpack.Decoder
	hencLim     uint32

	// ctl is the payload of a PING or WINDOW_UPDATE (readFrame).
	ctl [8]byte
	// deleg: what the connection's delegated requests share (delegate.go;
	// made on the first)
	deleg *delegConn

	mu        sync.Mutex
	streams   map[uint32]*Call // nil until the first stream, and while parked
	lastID    uint32
	inflight  int
	ndeleg    int    // of inflight, delegated streams (delegate.go)
	orphans   int    // of inflight, calls whose stream was reset while their handler runs
	goAway    bool   // GOAWAY sent: no new streams
	goAwayID  uint32 // last stream id accepted
	closed    bool
	ready     bool      // handshake done
	nwRun     bool      // drainNoWait runs
	idleSince time.Time // when the last stream closed (zero: busy)
	born      time.Time
	timer     *time.Timer // housekeeping (recv timeout, idle, age)
	timerDue  time.Time

	wmu      sync.Mutex
	wq       atomic.Int32  // writers queued for wmu (lockWrite)
	sqN      int32         // what sendQueueEmpty's probe read (wmu)
	sqFn     func(uintptr) // that probe (made on first use, dropped when the connection parks)
	wb       *[]byte       // pending bytes (pooled), nil: none
	lazyOnly bool          // what is pending is a PING ack that may wait (onPing)
	qEmpty   bool          // the send queue was found empty and nothing was written since
	// answers finishNoWait left to drainNoWait (under mu; nwRun: it runs)
	nwQ         []*Call
	wdl         int64 // mono time of the write deadline armed (with slack)
	henc        *hpack.Encoder
	hbuf        headerBuf
	connSendWin int64
	peerInitWin int64 // written by the reading goroutine only (under wmu)
	peerMaxFrm  int
	pending     []*Call       // replies waiting for send window
	winCh       chan struct{} // closed when send window arrives; delegated writers wait on it
	werr        error
}

// monoEpoch is the origin of the monotonic times kept as int64 (mono):
// 8 bytes each instead of a time.Time's 24 in the connection's struct.
var monoEpoch = time.Now()

// mono is t as nanoseconds since monoEpoch (monotonic clock).
func mono(t time.Time) int64 { return int64(t.Sub(monoEpoch)) }

// rate counts events in one-second windows.
type rate struct {
	start int64 // mono time
	n     int
}

func (r *rate) add(now time.Time, limit int) bool {
	if t := mono(now); t-r.start > int64(time.Second) {
		r.start, r.n = t, 0
	}
	r.n++
	return r.n <= limit
}

// wbufPool holds write buffers: a connection holds one only while it
// writes.
var wbufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, connSendWin: defaultWindow, peerInitWin: defaultWindow, peerMaxFrm: defaultMaxFrm}
	c.peer = peer.Peer{Addr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr()}
	c.base, c.stop = context.WithCancel(context.Background())
	// Reads and writes go to the accepted socket itself when nc wraps it
	// (connlimit's conn exposes NetConn): this transport arms its own
	// write deadline (with slack, flush), and the buffer-less wait needs
	// the *net.TCPConn. Close still goes through nc (it frees the slot).
	c.io = nc
	for {
		u, ok := c.io.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c.io = u.NetConn()
	}
	return c
}

func (c *conn) count(reason string) {
	if cv := c.s.cfg.Errors; cv != nil {
		cv.WithLabelValues(c.s.cfg.Name, reason).Inc()
	}
}

// serve runs the connection until it closes.
func (c *conn) serve() {
	if !c.handshake() {
		c.done()
		return
	}
	c.run()
}

// done releases what the connection holds once its last goroutine ends.
func (c *conn) done() {
	c.stop()
	if c.br != nil {
		c.br.keep = false
		c.br.release()
	}
	c.s.remove(c)
	c.s.wg.Done()
}

// end closes the connection after a read or handling error and releases it.
func (c *conn) end(err error) {
	c.batch.Flush()
	c.readError(err)
	c.done()
}

// run reads and handles frames. On a plain TCP connection (Linux) the
// wait for the next frame holds no read buffer: with nothing buffered
// the goroutine gives the buffer back and parks in the buffer-less wait
// (idle.go). A connection idle for Config.IdleGrace is interrupted there
// by its housekeeping timer (a read deadline in the past) and the wait
// moves to a fresh goroutine with a small stack; a connection in use
// keeps its goroutine (no hand-off per call).
func (c *conn) run() {
	for {
		if c.raw != nil && c.br.empty() {
			c.br.release()
			if c.batch.Pending() {
				c.batch.Flush()
			}
			if err := c.raw.Read(c.peekFn); err != nil {
				if !isTimeout(err) {
					c.end(err)
					return
				}
				_ = c.io.SetReadDeadline(time.Time{})
				c.shrink()
				c.parked.Store(true)
				if !c.park() {
					go c.idleWait()
				}
				return
			}
		}
		if err := c.readFrame(); err != nil {
			c.end(err)
			return
		}
	}
}

// onStreamError answers a frame the Framer rejected with a stream error:
// a request whose header block decoded but is invalid (an uppercase or
// connection-specific field, bad pseudo-headers) gets RST_STREAM and the
// connection goes on serving its other streams, as grpc-go's server
// does. Any other error (nil for a stream error without a decoded block,
// which may have left the HPACK state behind) is returned as a
// connection error.
func (c *conn) onStreamError(err error) error {
	var se http2.StreamError
	if !errors.As(err, &se) {
		return err
	}
	if se.Cause == nil || se.StreamID%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.s.cfg.Logger.Debug("stream error", "remote", c.peer.Addr, "stream", se.StreamID, "err", se)
	c.mu.Lock()
	cl := c.streams[se.StreamID]
	if cl == nil && se.StreamID <= c.lastID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	if cl == nil {
		c.lastID = se.StreamID // the stream is used up
	}
	c.mu.Unlock()
	if cl != nil {
		c.resetStream(cl, se.Code)
		return nil
	}
	c.lockWrite()
	defer c.unlockWrite()
	return c.flush(appendRST(c.getBuf(), se.StreamID, se.Code))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handshake does TLS, the preface and the SETTINGS exchange; false: the
// connection is closed.
func (c *conn) handshake() bool {
	cfg := &c.s.cfg
	_ = c.nc.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	if cfg.TLS != nil {
		tc := tls.Server(c.io, cfg.TLS)
		if err := tc.HandshakeContext(c.base); err != nil {
			c.s.cfg.Logger.Debug("tls handshake failed", "remote", c.peer.Addr, "err", err)
			c.count(ReasonHandshake)
			_ = c.nc.Close()
			return false
		}
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol != "h2" {
			c.count(ReasonHandshake)
			_ = c.nc.Close()
			return false
		}
		c.io = tc
		c.peer.AuthInfo = credentials.TLSInfo{State: cs, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	}
	c.base = peer.NewContext(c.base, &c.peer)
	c.callBase = context.WithoutCancel(c.base)
	c.br = &connReader{src: c.io, held: &c.s.held, batch: &c.batch}
	if cfg.TLS == nil {
		c.raw = connio.RawConn(c.io)
	}
	c.br.keep = c.raw == nil
	c.peekFn = c.peek.Ready
	c.pk.Init(c.raw, c.idleWait)
	var pre [len(http2.ClientPreface)]byte
	if err := c.awaitBytes(); err != nil {
		c.count(ReasonHandshake)
		c.closeNow(err)
		return false
	}
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		c.count(ReasonHandshake)
		c.closeNow(err)
		return false
	}
	c.fr = c.newFramer(hpack.NewDecoder(4096, nil))
	c.henc = hpack.NewEncoder(&c.hbuf)

	c.lockWrite()
	b := c.getBuf()
	b = appendSettings(b,
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: cfg.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(cfg.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: cfg.MaxHeaderListSize})
	if d := cfg.ConnWindow - defaultWindow; d > 0 {
		b = appendWindowUpdate(b, 0, uint32(d))
	}
	err := c.flush(b)
	c.unlockWrite()
	if err != nil {
		c.closeNow(err)
		return false
	}
	// The first frame must be the client's SETTINGS.
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.count(ReasonHandshake)
		c.closeNow(err)
		return false
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		c.connError(http2.ErrCodeProtocol, ReasonHandshake, "expected SETTINGS")
		return false
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	_ = c.nc.SetWriteDeadline(time.Time{})
	c.br.intr = c.raw != nil // a deadline is only the idle interrupt
	now := time.Now()
	c.mu.Lock()
	c.born, c.idleSince, c.ready = now, now, true
	c.lastRead.Store(now.UnixNano())
	c.timerDue = now.Add(c.nextCheck(now))
	c.timer = time.AfterFunc(time.Until(c.timerDue), c.housekeep)
	c.mu.Unlock()
	if err := c.handle(f); err != nil {
		c.readError(err)
		return false
	}
	return true
}

// newFramer is the connection's frame reader around the HPACK decoder
// hdec (which carries the connection's header table).
func (c *conn) newFramer(hdec *hpack.Decoder) *http2.Framer {
	fr := http2.NewFramer(io.Discard, c.br)
	fr.ReadMetaHeaders = hdec
	fr.MaxHeaderListSize = c.s.cfg.MaxHeaderListSize
	fr.SetReuseFrames()
	fr.SetMaxReadFrameSize(defaultMaxFrm) // what SETTINGS_MAX_FRAME_SIZE (not sent) means
	return fr
}

// readError ends the connection after a read or handling error.
func (c *conn) readError(err error) {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		reason := ReasonProtocol
		if http2.ErrCode(ce) == http2.ErrCodeCompression {
			reason = ReasonHeaderBlock
		}
		c.connError(http2.ErrCode(ce), reason, "")
		return
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.connError(http2.ErrCodeFrameSize, ReasonProtocol, "")
		return
	case errors.Is(err, errCalm):
		return // already sent GOAWAY and closed
	}
	c.closeNow(err)
}

var errCalm = errors.New("grpcserve: connection closed for abuse")

// connError sends GOAWAY with code and closes the connection.
func (c *conn) connError(code http2.ErrCode, reason, debug string) {
	c.count(reason)
	c.s.cfg.Logger.Debug("connection error", "remote", c.peer.Addr, "code", code, "reason", reason, "detail", c.fr.ErrorDetail())
	// goAway is set under the write lock: a call finishing meanwhile
	// that sees it (closeDrained) closes only after the GOAWAY is out.
	c.lockWrite()
	c.mu.Lock()
	last := c.lastID
	c.goAway = true
	c.mu.Unlock()
	_ = c.flushNow(appendGoAway(c.getBuf(), last, code, debug))
	c.unlockWrite()
	c.closeNow(fmt.Errorf("grpcserve: %v", code))
}

// closeNow closes the socket and cancels every call's context; handlers
// still finish their calls, which then write nothing.
func (c *conn) closeNow(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	calls := make([]*Call, 0, len(c.streams))
	for id, cl := range c.streams {
		cl.reset.Store(true)
		calls = append(calls, cl)
		delete(c.streams, id)
	}
	c.mu.Unlock()
	if c.parked.Load() { // (only ever set after the handshake, on plain TCP)
		c.s.park.Unpark(&c.pk) // its idleWait finds the socket closed
	}
	_ = c.nc.Close()
	if c.stop != nil {
		c.stop()
	}
	for _, cl := range calls {
		if cl.cancel != nil {
			cl.cancel()
		}
		cl.cancelled()
		if !cl.started { // no longer set once closed (endOfRequest)
			c.s.cfg.Metrics.answered(c.base, cl, codes.Canceled)
		}
	}
	_ = err
}

// drain sends GOAWAY (graceful: the streams already opened are served)
// and closes the connection once they are answered.
func (c *conn) drain() {
	c.mu.Lock()
	if c.goAway || c.closed || !c.ready {
		ready := c.ready
		c.mu.Unlock()
		if !ready { // still handshaking: nothing to drain
			c.closeNow(errServerClosed)
		}
		return
	}
	c.mu.Unlock()
	c.lockWrite() // before goAway is set: see connError
	c.mu.Lock()
	if c.goAway || c.closed {
		c.mu.Unlock()
		c.unlockWrite()
		return
	}
	c.goAway, c.goAwayID = true, c.lastID
	empty := len(c.streams) == 0
	c.mu.Unlock()
	_ = c.flushNow(appendGoAway(c.getBuf(), c.goAwayID, http2.ErrCodeNo, ""))
	c.unlockWrite()
	if empty {
		c.closeNow(errServerClosed)
	}
}

// closeDrained closes a drained connection once what is pending is
// written.
func (c *conn) closeDrained() {
	c.lockWrite()
	if c.wb != nil {
		_ = c.write()
	}
	c.wmu.Unlock()
	c.closeNow(errServerClosed)
}

// tick is the housekeeping period while streams are open: fine enough
// for recv_timeout (an eighth of it, at most 1 s).
func (c *conn) tick() time.Duration {
	return min(max(c.s.cfg.RecvTimeout/8, 10*time.Millisecond), time.Second)
}

// nextCheck is when housekeeping should run next (mu held): every tick
// while streams are open; otherwise when the connection becomes idle too
// long or too old, so an idle connection's timer does not fire in
// between.
func (c *conn) nextCheck(now time.Time) time.Duration {
	if len(c.streams) > 0 {
		return c.tick()
	}
	cfg := &c.s.cfg
	d := time.Hour
	if c.raw != nil && !c.parked.Load() && !c.idleSince.IsZero() {
		d = c.idleSince.Add(c.s.cfg.IdleGrace).Sub(now)
	}
	if cfg.MaxConnectionIdle > 0 && !c.idleSince.IsZero() {
		d = min(d, c.idleSince.Add(cfg.MaxConnectionIdle).Sub(now))
	}
	if ka := cfg.KeepaliveTime; ka > 0 {
		if c.kaPing.IsZero() {
			d = min(d, time.Unix(0, c.lastRead.Load()).Add(ka).Sub(now))
		} else {
			d = min(d, c.kaPing.Add(cfg.KeepaliveTimeout).Sub(now))
		}
	}
	if cfg.MaxConnectionAge > 0 {
		age := c.born.Add(cfg.MaxConnectionAge)
		if !now.Before(age) {
			age = age.Add(cfg.MaxConnectionAgeGrace)
		}
		d = min(d, age.Sub(now))
	}
	return max(d, 10*time.Millisecond)
}

// lazyAckDelay bounds how long a PING ack waits for a reply to ride with
// when no call is in flight.
const lazyAckDelay = 20 * time.Millisecond

// armLazyAck makes sure housekeeping runs within lazyAckDelay, to write a
// PING ack that waits for the next reply (mu held); false: no timer, ack
// now.
func (c *conn) armLazyAck(now time.Time) bool {
	if c.timer == nil || c.closed {
		return false
	}
	if c.timerDue.Sub(now) > lazyAckDelay {
		c.timerDue = now.Add(lazyAckDelay)
		c.timer.Reset(lazyAckDelay)
	}
	return true
}

// armForStream makes sure housekeeping runs within a tick once a stream
// is open (mu held): re-arming only when the timer was set for an idle
// connection, so a busy connection does not touch it per call.
func (c *conn) armForStream(now time.Time) {
	if c.timer == nil || c.closed {
		return
	}
	if t := c.tick(); c.timerDue.Sub(now) > t {
		c.timerDue = now.Add(t)
		c.timer.Reset(t)
	}
}

// housekeep runs on a timer: streams whose request did not arrive within
// RecvTimeout end DEADLINE_EXCEEDED; an idle or too old connection is
// drained.
func (c *conn) housekeep() {
	cfg := &c.s.cfg
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	var late []*Call
	for _, cl := range c.streams {
		if !cl.started && !cl.answered && now.Sub(cl.opened) >= cfg.RecvTimeout {
			cl.answered = true
			late = append(late, cl)
		}
	}
	idle := cfg.MaxConnectionIdle > 0 && len(c.streams) == 0 && !c.idleSince.IsZero() && now.Sub(c.idleSince) >= cfg.MaxConnectionIdle
	if c.raw != nil && len(c.streams) == 0 && !c.idleSince.IsZero() && now.Sub(c.idleSince) >= c.s.cfg.IdleGrace && !c.parked.Load() {
		// Wake the reader (idle for c.s.cfg.IdleGrace) so that it parks small.
		_ = c.io.SetReadDeadline(time.Unix(1, 0))
	}
	old := cfg.MaxConnectionAge > 0 && now.Sub(c.born) >= cfg.MaxConnectionAge
	hard := old && now.Sub(c.born) >= cfg.MaxConnectionAge+cfg.MaxConnectionAgeGrace
	ping, dead := c.keepalive(now)
	d := c.nextCheck(now)
	c.timerDue = now.Add(d)
	c.timer.Reset(d)
	c.mu.Unlock()
	c.flushLazy(now)
	for _, cl := range late {
		c.earlyStatus(cl, 200, status.New(codes.DeadlineExceeded, "outbound: request message not received in time"), nil)
	}
	if ping {
		c.lockWrite()
		*c.wbuf() = appendPing(c.getBuf(), 0, keepalivePing)
		c.lazyOnly = false
		c.unlockWrite()
	}
	switch {
	case dead:
		c.s.cfg.Logger.Debug("keepalive ping not answered", "remote", c.peer.Addr)
		c.closeNow(errors.New("grpcserve: keepalive ping not answered"))
	case c.drainedEmpty():
		c.closeDrained()
	case hard:
		c.closeNow(errors.New("grpcserve: max connection age"))
	case idle || old:
		c.drain()
	}
}

// keepalivePing is the payload of the server's keepalive PINGs.
var keepalivePing = [8]byte{'m', 'g', 'k', 'a'}

// keepalive decides (mu held), as grpc-go's server keepalive does, whether
// to PING a client silent for KeepaliveTime, and whether a PING sent has
// gone unanswered (no frame at all) for KeepaliveTimeout.
func (c *conn) keepalive(now time.Time) (ping, dead bool) {
	cfg := &c.s.cfg
	if cfg.KeepaliveTime <= 0 {
		return false, false
	}
	last := time.Unix(0, c.lastRead.Load())
	if !c.kaPing.IsZero() {
		if last.After(c.kaPing) {
			c.kaPing = time.Time{} // answered (or any other frame)
		} else {
			return false, now.Sub(c.kaPing) >= cfg.KeepaliveTimeout
		}
	}
	if now.Sub(last) >= cfg.KeepaliveTime {
		c.kaPing = now
		return true, false
	}
	return false, false
}

// handle processes one frame (reading goroutine).
func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f.StreamID, f.StreamEnded(), f.Truncated, f.Fields)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.RSTStreamFrame:
		return c.onRST(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		return c.onPing(f.IsAck(), f.Data)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f.StreamID, f.Increment)
	case *http2.GoAwayFrame:
		return nil // the client leaves; its open streams are answered
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY, unknown frame types: ignored
}

func (c *conn) calm(reason, debug string) error {
	c.connError(http2.ErrCodeEnhanceYourCalm, reason, debug)
	return errCalm
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if !c.ctlWin.add(time.Now(), c.s.cfg.MaxControlPerSecond) {
		return c.calm(ReasonControl, "too many control frames")
	}
	c.lockWrite()
	defer c.unlockWrite()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWin
			c.peerInitWin = int64(s.Val)
			c.mu.Lock()
			for _, cl := range c.streams {
				cl.sendWin += delta
			}
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.peerMaxFrm = int(s.Val)
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(min(s.Val, 4096))
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.wakeWriters()
	b := appendSettingsAck(c.getBuf())
	b = c.writePending(b)
	return c.flush(b)
}

// onPing takes a PING (data: its payload).
func (c *conn) onPing(ack bool, data [8]byte) error {
	if ack {
		return nil
	}
	now := time.Now()
	// grpc-go's keepalive enforcement (which also bounds a PING flood:
	// only the first PING after a reply is exempt): a ping sooner than
	// keepalive_min_time after the last one (2 h without an open call)
	// is a strike; strikes are forgiven when a reply is written.
	c.mu.Lock()
	open := len(c.streams) > 0
	c.mu.Unlock()
	minT := c.s.cfg.KeepaliveMinTime
	if !open {
		minT = 2 * time.Hour
	}
	last := c.lastPing
	c.lastPing = mono(now)
	if c.wroteStream.Swap(false) {
		// A reply was written since the last ping: this one is not checked
		// (grpc-go: a client's BDP pings follow the server's data).
		c.pingStrikes = 0
	} else if last != 0 && mono(now)-last < int64(minT) {
		c.pingStrikes++
		if c.pingStrikes > maxPingStrikes {
			return c.calm(ReasonPing, "too_many_pings")
		}
	}
	c.lockWrite()
	defer c.unlockWrite()
	// With calls in flight the ack rides with the next reply (grpc-go
	// clients send a BDP ping after the replies they read) or the next
	// housekeeping tick (at most 1 s); otherwise it is written now.
	c.mu.Lock()
	busy := c.inflight > c.ndeleg // delegated streams may live long
	if !busy && !c.armLazyAck(now) {
		c.mu.Unlock()
		return c.flush(appendPingAck(c.getBuf(), data))
	}
	c.mu.Unlock()
	lazy := c.wb == nil || c.lazyOnly
	*c.wbuf() = appendPingAck(c.getBuf(), data)
	c.lazyOnly = lazy
	return nil
}

// flushLazy writes a PING ack no reply took along (housekeeping), and
// resets the streams whose queued reply has waited for send window
// longer than WriteTimeout (a peer that reads the socket but grants no
// window would otherwise hold the reply and the stream forever), as a
// delegated stream's writer does.
func (c *conn) flushLazy(now time.Time) {
	c.lockWrite()
	if len(c.pending) > 0 {
		keep := c.pending[:0]
		for _, cl := range c.pending {
			if cl.reset.Load() || now.Sub(cl.stall) < c.s.cfg.WriteTimeout {
				keep = append(keep, cl)
				continue
			}
			*c.wbuf() = appendRST(c.getBuf(), cl.id, http2.ErrCodeCancel)
			c.dropStream(cl) // takes mu: fine with wmu held
			cl.dropOut()
			c.count(ReasonStalled)
		}
		clear(c.pending[len(keep):])
		c.pending = keep
	}
	if c.wb != nil {
		_ = c.write()
	}
	c.wmu.Unlock()
}

// wbuf is the pending buffer (wmu held).
func (c *conn) wbuf() *[]byte {
	if c.wb == nil {
		c.wb = wbufPool.Get().(*[]byte)
	}
	return c.wb
}

// onWindowUpdate takes a WINDOW_UPDATE of stream id (0: the connection).
func (c *conn) onWindowUpdate(id, inc uint32) error {
	c.lockWrite()
	defer c.unlockWrite()
	if id == 0 {
		c.connSendWin += int64(inc)
		if c.connSendWin > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else {
		c.mu.Lock()
		cl := c.streams[id]
		idle := id > c.lastID
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if cl == nil {
			return nil // a closed stream: ignored
		}
		cl.sendWin += int64(inc)
		if cl.sendWin > maxWindow {
			b := appendRST(c.getBuf(), id, http2.ErrCodeFlowControl)
			c.dropStream(cl)
			return c.flush(b)
		}
	}
	c.wakeWriters()
	if len(c.pending) == 0 {
		return nil
	}
	return c.flush(c.writePending(c.getBuf()))
}

// dropStream forgets cl (reset): it is removed from the streams and its
// context cancelled. Called with wmu held or not; takes mu.
func (c *conn) dropStream(cl *Call) {
	c.mu.Lock()
	if c.streams[cl.id] == cl {
		delete(c.streams, cl.id)
		c.streamClosedLocked()
		if cl.started && !cl.handled && !cl.orphan {
			cl.orphan = true
			c.orphans++
		}
	}
	cl.reset.Store(true)
	unstarted := !cl.started
	c.mu.Unlock()
	if cl.cancel != nil {
		cl.cancel()
	}
	cl.cancelled()
	if unstarted { // the request never reached the handler
		c.s.cfg.Metrics.answered(c.base, cl, codes.Canceled)
	}
}

// handlerDone notes that cl's handler has answered (mu held): a call
// whose stream was reset no longer holds a stream slot.
func (c *conn) handlerDone(cl *Call) {
	cl.handled = true
	if cl.orphan {
		cl.orphan = false
		c.orphans--
	}
}

// streamClosedLocked notes that a stream closed (mu held).
func (c *conn) streamClosedLocked() {
	if len(c.streams) == 0 {
		c.idleSince = time.Now()
	}
}

func (c *conn) onRST(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	if f.StreamID > c.lastID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	cl := c.streams[f.StreamID]
	c.mu.Unlock()
	if cl == nil {
		return nil
	}
	c.dropStream(cl)
	if !c.resetWin.add(time.Now(), c.s.cfg.MaxResetsPerSecond) {
		return c.calm(ReasonRapidReset, "too many resets")
	}
	if c.drainedEmpty() { // the client reset the last stream after GOAWAY
		c.closeDrained()
	}
	return nil
}

// drainedEmpty reports a connection sent GOAWAY whose last stream has
// gone (to be closed).
func (c *conn) drainedEmpty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway && !c.closed && len(c.streams) == 0
}

// onHeaders takes the header block of stream id: its fields as decoded
// (truncated: the header list exceeded MaxHeaderListSize).
func (c *conn) onHeaders(id uint32, endStream, truncated bool, fields []hpack.HeaderField) error {
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if cl := c.streams[id]; cl != nil {
		c.mu.Unlock()
		// Trailers from the client: they must end the stream.
		if !endStream {
			c.resetStream(cl, http2.ErrCodeProtocol)
			return nil
		}
		return c.endOfRequest(cl)
	}
	if id <= c.lastID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	c.mu.Unlock()
	cl := &Call{c: c, id: id, msgLen: -1, opened: time.Now(), endStream: endStream}
	// The reply's content-type, set before the call is published (the
	// housekeeping timer may answer it).
	for _, hf := range fields {
		if hf.Name == "content-type" {
			if grpcwire.ValidContentType(hf.Value) {
				cl.ct = replyContentType(hf.Value)
			}
			break
		}
	}
	// peerInitWin changes only on this goroutine (onSettings), and cl is
	// not published yet: no write lock, which a writer stuck on a client
	// that stopped reading may hold for the write timeout.
	cl.sendWin = c.peerInitWin
	c.mu.Lock()
	c.lastID = id
	// Calls reset by the client count until their handler returns
	// (orphans): a client resetting streams cannot run more handlers than
	// MaxConcurrentStreams (grpc-go bounds its handlers the same way).
	refuse := c.goAway || uint32(len(c.streams)+c.orphans) >= c.s.cfg.MaxConcurrentStreams
	if !refuse {
		// Published with lastID, under the same lock: a GOAWAY (drain)
		// that counts the stream as seen also finds it open, and does not
		// close the connection under it.
		if c.streams == nil { // none yet, or dropped while parked (shrink)
			c.streams = map[uint32]*Call{}
		}
		c.streams[id] = cl
		c.idleSince = time.Time{}
		c.armForStream(cl.opened)
	}
	c.mu.Unlock()
	if refuse {
		c.lockWrite()
		err := c.flush(appendRST(c.getBuf(), id, http2.ErrCodeRefusedStream))
		c.unlockWrite()
		return err
	}

	if truncated {
		c.earlyStatus(cl, 200, status.New(codes.Internal, "grpcserve: header list size exceeds the limit"), nil)
		return nil
	}
	// Checked in grpc-go's server's order, answered as it answers.
	var ct, te, method, host string
	var nAuth, nHost int
	var connHdr bool
	var hdrErr *status.Status
	// One map sized for the keys it gets (a small map up to 8) and one
	// backing array for the first value of every key (a key's slice has
	// capacity 1: a second value of the key is appended to a copy).
	nmd := 0
	for _, hf := range fields {
		if hf.Name == ":authority" || !isReserved(hf.Name) && hf.Name != "host" && hf.Name != "connection" {
			nmd++
		}
	}
	md := make(metadata.MD, nmd)
	vals := make([]string, 0, nmd)
	add := func(k, v string) {
		if old, ok := md[k]; ok {
			md[k] = append(old, v)
			return
		}
		vals = append(vals, v)
		md[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for _, hf := range fields {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":path":
			cl.method = hf.Value
		case ":authority":
			nAuth++
			add(":authority", hf.Value)
		case "host":
			nHost++
			host = hf.Value
		case "connection": // makes the request malformed (gRFC A41)
			connHdr = true
		case "content-type":
			ct = hf.Value
			add(hf.Name, hf.Value)
		case "grpc-timeout":
			te = hf.Value
		case "grpc-encoding":
			cl.enc = hf.Value
		default:
			if isReserved(hf.Name) {
				continue
			}
			v := hf.Value
			if len(hf.Name) > 4 && hf.Name[len(hf.Name)-4:] == "-bin" {
				var err error
				if v, err = grpcwire.DecodeValue(hf.Name, v); err != nil {
					hdrErr = status.Newf(codes.Internal, "malformed binary metadata %q in header %q: %v", hf.Value, hf.Name, err)
					continue
				}
			}
			add(hf.Name, v)
		}
	}
	cl.md = md
	switch {
	case nAuth > 1 || nHost > 1:
		c.earlyStatus(cl, 400, status.Newf(codes.Internal, "num values of :authority: %v, num values of host: %v, both must only have 1 value as per HTTP/2 spec", nAuth, nHost), nil)
		return nil
	case connHdr:
		c.resetStream(cl, http2.ErrCodeProtocol)
		return nil
	case !grpcwire.ValidContentType(ct):
		c.earlyStatus(cl, 415, status.Newf(codes.InvalidArgument, "invalid gRPC request content-type %q", ct), nil)
		return nil
	}
	if te != "" && hdrErr == nil {
		d, err := grpcwire.ParseTimeout(te)
		if err != nil {
			hdrErr = status.Newf(codes.Internal, "malformed grpc-timeout: %v", err)
		} else {
			cl.dl = cl.opened.Add(d)
		}
	}
	switch {
	case hdrErr != nil:
		c.earlyStatus(cl, 400, hdrErr, nil)
		return nil
	case nAuth == 0 && nHost == 0:
		c.earlyStatus(cl, 400, status.New(codes.Internal, "no host or :authority header present"), nil)
		return nil
	case nAuth == 0:
		md[":authority"] = []string{host}
	}
	if method != "POST" {
		c.earlyStatus(cl, 405, status.Newf(codes.Internal, "Received a HEADERS frame with :method %q which should be POST", method), nil)
		return nil
	}
	if !cl.dl.IsZero() && cl.dl.Sub(cl.opened) < time.Millisecond && !time.Now().Before(cl.dl) {
		// A deadline already past (grpc-timeout 0, a few ns).
		c.earlyStatus(cl, 200, status.New(codes.DeadlineExceeded, context.DeadlineExceeded.Error()), nil)
		return nil
	}
	if cl.method == "" {
		c.earlyStatus(cl, 200, status.New(codes.Unimplemented, "grpcserve: no :path"), nil)
		return nil
	}
	if c.s.fast != nil && !c.s.fast.Fast(cl.method) {
		// grpc-go's handler transport checks the encoding and records the
		// call in its own metrics.
		return c.delegate(cl, fields)
	}
	c.s.cfg.Metrics.begin(c.base, cl) // grpc-go's server counts the call from here
	switch cl.enc {
	case "", "identity", "gzip":
	default:
		c.earlyStatus(cl, 200, status.Newf(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", cl.enc),
			[]hpack.HeaderField{{Name: "grpc-accept-encoding", Value: "gzip"}})
		return nil
	}
	if cl.endStream {
		return c.endOfRequest(cl)
	}
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length)
	// Connection flow control counts every DATA frame, padding included.
	c.connUsed += n
	if c.connUsed > int64(c.s.cfg.ConnWindow) {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	if err := c.grantConn(uint32(n)); err != nil {
		return err
	}
	c.mu.Lock()
	if id%2 == 0 || id > c.lastID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	cl := c.streams[id]
	c.mu.Unlock()
	if cl == nil || cl.answered {
		return nil // a stream already reset or answered: dropped
	}
	if cl.d != nil {
		c.onDelegatedData(cl, f.Data(), n, f.StreamEnded())
		return nil
	}
	if cl.endStream {
		c.resetStream(cl, http2.ErrCodeStreamClosed)
		return nil
	}
	cl.recvUsed += n
	if cl.recvUsed > int64(c.s.cfg.StreamWindow) {
		c.resetStream(cl, http2.ErrCodeFlowControl)
		return nil
	}
	if st := cl.appendData(f.Data(), c.s.cfg.MaxRecvMsgSize); st != nil {
		c.earlyStatus(cl, 200, st, nil)
		return nil
	}
	if f.StreamEnded() {
		return c.endOfRequest(cl)
	}
	// Grant the stream's window back as it is consumed (it is buffered:
	// the message size limit bounds what a stream can hold).
	cl.unacked += uint32(n)
	if cl.unacked >= uint32(c.s.cfg.StreamWindow/4) {
		incr := cl.unacked
		cl.recvUsed -= int64(incr)
		cl.unacked = 0
		c.lockWrite()
		err := c.flush(appendWindowUpdate(c.getBuf(), id, incr))
		c.unlockWrite()
		return err
	}
	return nil
}

// grantConn gives consumed connection window back once a quarter of it
// is used.
func (c *conn) grantConn(n uint32) error {
	c.connUnacked += n
	if c.connUnacked < uint32(c.s.cfg.ConnWindow/4) {
		return nil
	}
	incr := c.connUnacked
	c.connUnacked = 0
	c.connUsed -= int64(incr)
	c.lockWrite()
	defer c.unlockWrite()
	return c.flush(appendWindowUpdate(c.getBuf(), 0, incr))
}

// appendData adds DATA payload p to the request: the first message is
// kept (its length checked against max as soon as its prefix is in);
// anything after it only marks extra. A status is returned for a message
// over the limit.
func (cl *Call) appendData(p []byte, maxMsg int) *status.Status {
	for len(p) > 0 {
		if cl.extra {
			return nil
		}
		if cl.msgLen < 0 {
			k := copy(cl.pfx[cl.npfx:], p)
			cl.npfx += uint8(k)
			p = p[k:]
			if cl.npfx < 5 {
				return nil
			}
			ml := int(uint32(cl.pfx[1])<<24 | uint32(cl.pfx[2])<<16 | uint32(cl.pfx[3])<<8 | uint32(cl.pfx[4]))
			if ml > maxMsg || ml < 0 {
				return status.Newf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", ml, maxMsg)
			}
			cl.msgLen = ml
			if mem.IsBelowBufferPoolingThreshold(ml) {
				// mem.NewBuffer (TakeMessage) would not give a pooled
				// buffer this small back to the pool.
				cl.small = make([]byte, 0, ml)
				cl.msg = &cl.small
			} else {
				cl.msg = mem.DefaultBufferPool().Get(ml)
				*cl.msg = (*cl.msg)[:0]
			}
			continue
		}
		if len(*cl.msg) == cl.msgLen {
			cl.extra = true
			return nil
		}
		k := min(cl.msgLen-len(*cl.msg), len(p))
		*cl.msg = append(*cl.msg, p[:k]...)
		p = p[k:]
	}
	return nil
}

// endOfRequest: the client half-closed cl; check the message and hand
// the call to the handler.
func (c *conn) endOfRequest(cl *Call) error {
	if cl.d != nil {
		cl.d.endBody()
		return nil
	}
	if cl.answered || cl.started {
		return nil
	}
	cl.endStream = true
	cfg := &c.s.cfg
	switch {
	case cl.msgLen < 0 && cl.npfx > 0,
		cl.msgLen >= 0 && len(*cl.msg) < cl.msgLen:
		cl.freeMsg()
		c.earlyStatus(cl, 200, status.New(codes.Internal, "grpcserve: request message truncated"), nil)
		return nil
	case cl.msgLen >= 0:
		cl.hasMsg = true
		if cl.pfx[0]&1 != 0 {
			if st := cl.decompress(cfg.MaxRecvMsgSize); st != nil {
				cl.freeMsg()
				c.earlyStatus(cl, 200, st, nil)
				return nil
			}
		}
	}
	c.mu.Lock()
	if !c.admitLocked(cl, cl.freeMsg) {
		return nil
	}
	c.mu.Unlock()

	ctx := metadata.NewIncomingContext(c.callBase, cl.md)
	ctx = grpc.NewContextWithServerTransportStream(ctx, cl)
	if cl.dl.IsZero() {
		cl.ctx, cl.cancel = context.WithCancel(ctx)
	} else {
		cl.ctx, cl.cancel = context.WithDeadline(ctx, cl.dl)
	}
	if cl.reset.Load() { // closed meanwhile
		cl.cancel()
	}
	switch {
	case c.s.in != nil && c.s.in.TryStart(cl):
	case cfg.Blocking:
		c.s.handed.Add(1)
		c.s.wk.Dispatch(cl)
	default:
		cfg.Handler.Start(cl)
	}
	return nil
}

// decompress replaces a compressed message by its gzip-decoded bytes.
func (cl *Call) decompress(maxMsg int) *status.Status {
	if cl.enc == "" || cl.enc == "identity" {
		return status.New(codes.Internal, "grpc: compressed flag set with identity or empty encoding")
	}
	comp := encoding.GetCompressor(cl.enc)
	if comp == nil {
		return status.Newf(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", cl.enc)
	}
	r, err := comp.Decompress(bytes.NewReader(*cl.msg))
	if err != nil {
		return status.Newf(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	}
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(r, int64(maxMsg)+1))
	if err != nil {
		return status.Newf(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	}
	if n > int64(maxMsg) {
		return status.Newf(codes.ResourceExhausted, "grpc: received message after decompression larger than max %d", maxMsg)
	}
	cl.putMsg()
	b := out.Bytes()
	cl.msg = &b
	cl.msgTook = false
	return nil
}

// resetStream sends RST_STREAM code and forgets cl.
func (c *conn) resetStream(cl *Call, code http2.ErrCode) {
	cl.answered = true
	c.dropStream(cl)
	c.lockWrite()
	_ = c.flush(appendRST(c.getBuf(), cl.id, code))
	c.unlockWrite()
}

// admitLocked starts cl (c.mu held): it is counted in flight and marked
// started, and c.mu stays held. If the connection closed or the stream is
// gone, or MaxInFlightPerConn calls are in flight already (answered
// RESOURCE_EXHAUSTED), it returns false with c.mu released and release
// (what the caller holds for cl) run before any answer is written.
func (c *conn) admitLocked(cl *Call, release func()) bool {
	if c.closed || c.streams[cl.id] != cl {
		c.mu.Unlock()
		release()
		return false
	}
	if n := c.s.cfg.MaxInFlightPerConn; n > 0 && c.inflight >= n {
		c.mu.Unlock()
		release()
		c.earlyStatus(cl, 200, status.New(codes.ResourceExhausted, "outbound: too many calls in flight on this connection"), nil)
		return false
	}
	c.inflight++
	cl.started = true
	return true
}

// earlyStatus answers a stream the handler never saw: a trailers-only
// response with HTTP status httpStatus, then RST_STREAM NO_ERROR when the
// client has not half-closed (what it still sends is not read).
func (c *conn) earlyStatus(cl *Call, httpStatus int, st *status.Status, extra []hpack.HeaderField) {
	cl.answered = true
	c.lockWrite()
	c.hbuf.b = c.hbuf.b[:0]
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(httpStatus)})
	_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: cl.replyCT()})
	for _, hf := range extra {
		_ = c.henc.WriteField(hf)
	}
	c.writeStatus(st, nil)
	b := appendHeaderBlock(c.getBuf(), cl.id, c.hbuf.b, true, c.peerMaxFrm)
	if !cl.endStream {
		b = appendRST(b, cl.id, http2.ErrCodeNo)
	}
	_ = c.flush(b)
	c.unlockWrite()
	c.mu.Lock()
	if c.streams[cl.id] == cl {
		delete(c.streams, cl.id)
		c.streamClosedLocked()
	}
	drained := c.goAway && len(c.streams) == 0
	c.mu.Unlock()
	if cl.cancel != nil {
		cl.cancel()
	}
	c.s.cfg.Metrics.answered(c.base, cl, st.Code())
	if drained {
		c.closeDrained()
	}
}

// writeStatus encodes grpc-status, grpc-message, grpc-status-details-bin
// and trailer metadata (wmu held).
func (c *conn) writeStatus(st *status.Status, trl metadata.MD) {
	code := codes.OK
	if st != nil {
		code = st.Code()
	}
	_ = c.henc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(code))})
	msg := ""
	if st != nil {
		msg = st.Message()
	}
	// grpc-go sends grpc-message even when empty.
	_ = c.henc.WriteField(hpack.HeaderField{Name: "grpc-message", Value: grpcwire.EncodeMessage(msg)})
	if st != nil {
		if p := st.Proto(); p != nil && len(p.Details) > 0 {
			if b, err := proto.Marshal(p); err == nil {
				_ = c.henc.WriteField(hpack.HeaderField{Name: "grpc-status-details-bin", Value: base64.RawStdEncoding.EncodeToString(b)})
			}
		}
	}
	for k, vs := range trl {
		for _, v := range vs {
			writeMD(c.henc, k, v)
		}
	}
}

// finish writes cl's reply (any goroutine): HEADERS, the DATA the send
// windows allow and the trailers, in one write. What the windows do not
// allow is queued and written when WINDOW_UPDATEs arrive.
func (c *conn) finish(cl *Call) {
	if c.settled(cl) {
		c.lockWrite()
		c.answer(cl, nil)
	}
}

// noWaitBytes bounds what finishNoWait writes itself: well inside the
// smallest send buffer a TCP socket starts with (tcp_wmem's default
// 16 KB), so that an empty send queue takes it without blocking.
const noWaitBytes = 8 << 10

// finishNoWait is finish for a goroutine that must not block on this
// connection (Call.FinishNoWaitIn): b, when not nil, is that goroutine's
// write batch, which the answer is left to when it is written here.
func (c *conn) finishNoWait(cl *Call, b *connio.Batch) {
	if !c.settled(cl) {
		return
	}
	if c.raw != nil && c.wmu.TryLock() {
		n := len(cl.out) + 1024 // the answer, its headers and trailers
		if len(c.pending) == 0 && (c.qEmpty || c.sendQueueEmpty()) {
			c.qEmpty = true
			if c.wb != nil && len(*c.wb) > 0 {
				if n+len(*c.wb) > noWaitBytes && !c.lazyOnly {
					// What batches left here: at most noWaitBytes, into an
					// empty send queue.
					_ = c.write()
				} else {
					n += len(*c.wb)
				}
			}
			if n <= noWaitBytes {
				c.answer(cl, b)
				return
			}
		}
		c.wmu.Unlock()
	}
	// Left to a goroutine of its own, one per burst: the answers that
	// queue while it runs leave in one write.
	c.mu.Lock()
	c.nwQ = append(c.nwQ, cl)
	start := !c.nwRun
	c.nwRun = true
	c.mu.Unlock()
	if start {
		go c.drainNoWait()
	}
}

// drainNoWait answers the calls finishNoWait queued, until none is left:
// each burst is encoded under the write lock call by call and written
// once (a local batch).
func (c *conn) drainNoWait() {
	var b connio.Batch
	var q []*Call
	for {
		c.mu.Lock()
		q, c.nwQ = c.nwQ, q[:0]
		if len(q) == 0 {
			c.nwRun = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for i, cl := range q {
			c.lockWrite()
			c.answer(cl, &b)
			q[i] = nil
		}
		b.Flush()
	}
}

// FlushBatch writes the answers a batch left pending (connio.Flusher).
// When another goroutine holds the write lock it writes them itself.
func (c *conn) FlushBatch() {
	if !c.wmu.TryLock() {
		return
	}
	if c.wb != nil && len(*c.wb) > 0 && !c.lazyOnly {
		_ = c.write()
	}
	c.wmu.Unlock()
}

// flushIn is flush for answer's last write, then releases wmu: with a
// batch, b is only made pending and the batch flushes it.
func (c *conn) flushIn(b []byte, batch *connio.Batch) error {
	if batch == nil || c.werr != nil {
		err := c.flush(b)
		c.unlockWrite()
		return err
	}
	if c.wb == nil {
		c.wb = wbufPool.Get().(*[]byte)
	}
	*c.wb = b
	c.lazyOnly = false
	c.wmu.Unlock()
	batch.Defer(c)
	return nil
}

// settled counts the call out of the connection's in-flight calls and
// reports whether its answer is still to be written (false: the stream
// or the connection has gone; the call is cancelled).
func (c *conn) settled(cl *Call) bool {
	c.mu.Lock()
	c.inflight--
	c.handlerDone(cl)
	live := !c.closed && c.streams[cl.id] == cl && !cl.reset.Load()
	c.mu.Unlock()
	if !live {
		cl.cancel()
	}
	return live
}

// answer writes the call's response (wmu held; released on return),
// or leaves the write to batch (nil: write now).
func (c *conn) answer(cl *Call, batch *connio.Batch) {
	c.wroteStream.Store(true)
	b := c.getBuf()
	if cl.st != nil || !cl.hasOut {
		// trailers-only, unless header metadata was set: then HEADERS and
		// trailers, as grpc-go's server sends them
		c.hbuf.b = c.hbuf.b[:0]
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: cl.replyCT()})
		if len(cl.header) > 0 {
			for k, vs := range cl.header {
				for _, v := range vs {
					writeMD(c.henc, k, v)
				}
			}
			b = appendHeaderBlock(b, cl.id, c.hbuf.b, false, c.peerMaxFrm)
			c.hbuf.b = c.hbuf.b[:0]
		}
		c.writeStatus(cl.st, cl.trailer)
		b = appendHeaderBlock(b, cl.id, c.hbuf.b, true, c.peerMaxFrm)
		cl.hdrSent, cl.sent = true, 0
		cl.dropOut()
		drained := c.streamEnding(cl)
		c.streamEnded(cl, drained, c.flushIn(b, batch))
		return
	}
	c.hbuf.b = c.hbuf.b[:0]
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: cl.replyCT()})
	if cl.out[0]&1 != 0 { // compressed with the request's encoding (SendMsg)
		_ = c.henc.WriteField(hpack.HeaderField{Name: "grpc-encoding", Value: cl.enc})
	}
	for k, vs := range cl.header {
		for _, v := range vs {
			writeMD(c.henc, k, v)
		}
	}
	b = appendHeaderBlock(b, cl.id, c.hbuf.b, false, c.peerMaxFrm)
	cl.hdrSent = true
	var done bool
	if len(c.pending) > 0 {
		cl.stall = time.Now()
		c.pending = append(c.pending, cl) // keep reply order fair
		b = c.writePending(b)
		done = false
	} else if b, done = c.writeBody(b, cl); !done {
		cl.stall = time.Now()
		c.pending = append(c.pending, cl)
	}
	drained := done && c.streamEnding(cl)
	err := c.flushIn(b, batch)
	if done {
		c.streamEnded(cl, drained, err)
	}
}

// streamDone forgets a stream whose last frames were written (err: the
// write's error).
func (c *conn) streamDone(cl *Call, err error) {
	c.streamEnded(cl, c.streamEnding(cl), err)
}

// streamEnding forgets a stream whose last frames are about to be
// written, before they are (as grpc-go's server deletes a stream before
// it queues the trailers): a client that reads them may open its next
// stream at once and must find the stream's slot free, or it would be
// refused (REFUSED_STREAM at the MAX_CONCURRENT_STREAMS limit). It
// reports whether the connection is then drained.
func (c *conn) streamEnding(cl *Call) (drained bool) {
	c.mu.Lock()
	if c.streams[cl.id] == cl {
		delete(c.streams, cl.id)
		c.streamClosedLocked()
	}
	drained = c.goAway && len(c.streams) == 0
	c.mu.Unlock()
	return drained
}

// streamEnded completes streamEnding once the frames are written (err:
// the write's error).
func (c *conn) streamEnded(cl *Call, drained bool, err error) {
	cl.cancel()
	if err != nil {
		c.closeNow(err)
	} else if drained {
		c.closeDrained()
	}
}

// writeBody appends as much of cl's message as the windows allow and,
// when all of it is in, the trailers (wmu held). done: the stream ended.
func (c *conn) writeBody(b []byte, cl *Call) ([]byte, bool) {
	for cl.sent < len(cl.out) {
		n := int64(len(cl.out) - cl.sent)
		n = min(n, c.connSendWin, cl.sendWin, int64(c.peerMaxFrm))
		if n <= 0 {
			return b, false
		}
		b = appendFrameHeader(b, int(n), http2.FrameData, 0, cl.id)
		c.wroteStream.Store(true)
		b = append(b, cl.out[cl.sent:cl.sent+int(n)]...)
		cl.sent += int(n)
		c.connSendWin -= n
		cl.sendWin -= n
		if len(b) >= 64<<10 { // bound the write buffer of a large reply
			if err := c.flush(b); err != nil {
				return c.getBuf(), false
			}
			b = c.getBuf()
		}
	}
	c.hbuf.b = c.hbuf.b[:0]
	c.writeStatus(nil, cl.trailer)
	b = appendHeaderBlock(b, cl.id, c.hbuf.b, true, c.peerMaxFrm)
	cl.dropOut()
	return b, true
}

// writePending continues queued replies in order while the windows allow
// (wmu held); finished streams are forgotten.
func (c *conn) writePending(b []byte) []byte {
	keep := c.pending[:0]
	for i, cl := range c.pending {
		if cl.reset.Load() {
			continue
		}
		var done bool
		sent := cl.sent
		b, done = c.writeBody(b, cl)
		if !done {
			if cl.sent != sent {
				cl.stall = time.Now()
			}
			keep = append(keep, c.pending[i:]...)
			break
		}
		c.mu.Lock()
		if c.streams[cl.id] == cl {
			delete(c.streams, cl.id)
			c.streamClosedLocked()
		}
		c.mu.Unlock()
		cl.cancel()
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	return b
}

// Writes are coalesced: whoever holds wmu appends its frames to the
// connection's pending buffer (getBuf … flush); the bytes are written when
// no other writer is queued for wmu, else the next holder writes them
// with its own. A burst of replies completing together leaves in one
// write. Every holder releases wmu with unlockWrite, which writes what is
// pending when nobody is queued.

// lockWrite takes wmu, counting the writers queued for it.
func (c *conn) lockWrite() {
	c.wq.Add(1)
	c.wmu.Lock()
	c.wq.Add(-1)
}

// unlockWrite writes what is pending unless another writer is queued,
// then releases wmu.
func (c *conn) unlockWrite() {
	if c.wb != nil && !c.lazyOnly && c.wq.Load() == 0 {
		_ = c.write()
	}
	c.wmu.Unlock()
}

// getBuf returns the pending write buffer to append frames to (wmu held).
func (c *conn) getBuf() []byte {
	if c.wb == nil {
		c.wb = wbufPool.Get().(*[]byte)
	}
	return *c.wb
}

// flush makes b (appended to getBuf's buffer) pending and writes it now
// unless another writer is queued (wmu held).
func (c *conn) flush(b []byte) error {
	if c.wb == nil {
		c.wb = wbufPool.Get().(*[]byte)
	}
	*c.wb = b
	c.lazyOnly = false
	if c.wq.Load() > 0 && len(b) < 64<<10 {
		return c.werr
	}
	return c.write()
}

// flushNow makes b pending and writes everything pending now (wmu
// held): before a close.
func (c *conn) flushNow(b []byte) error {
	*c.wb = b
	return c.write()
}

// write writes the pending bytes and returns the buffer to the pool (wmu
// held). The write deadline is armed with slack (T + T/8, re-armed when
// less than T is left).
func (c *conn) write() error {
	wb := c.wb
	b := *wb
	c.wb, c.lazyOnly = nil, false
	defer func() {
		if cap(b) <= 64<<10+16<<10 {
			*wb = b[:0]
			wbufPool.Put(wb)
		}
	}()
	if len(b) == 0 || c.werr != nil {
		return c.werr
	}
	t := c.s.cfg.WriteTimeout
	if now := time.Now(); c.wdl-mono(now) < int64(t) {
		dl := now.Add(t + t/8)
		c.wdl = mono(dl)
		_ = c.io.SetWriteDeadline(dl)
	}
	c.qEmpty = false
	if _, err := c.io.Write(b); err != nil {
		c.werr = err
		c.closeNow(err) // takes mu, never wmu: safe with wmu held
		return err
	}
	return nil
}
