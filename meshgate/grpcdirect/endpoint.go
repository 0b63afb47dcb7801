// Package grpcdirect is MeshGate's purpose-built unary gRPC client for the
// private → gRPC hot path: HTTP/2 spoken directly with golang.org/x/net's
// Framer and HPACK over a few connections per upstream endpoint, instead
// of grpc-go's client transport.
//
// Hand-offs per call are kept to at most one: the calling goroutine
// encodes the request's HEADERS and DATA frames itself, under the
// connection's write lock, into one buffer flushed with one write; then,
// while it waits, it reads the connection itself unless another waiting
// caller already does (the read role, read.go), so a lone call's reply is
// read by its own caller and a reply read by another caller is handed over
// once. The connection's background goroutine reads only when no caller
// does. There is no per-call goroutine and no per-call timer: a call waits
// on its context (the caller's deadline) and sends grpc-timeout so the
// server enforces it too. Endpoint.Start makes a call without waiting:
// its completion callback runs on the goroutine that reads the response
// (async.go).
//
// What it implements of HTTP/2 and gRPC: the SETTINGS exchange, the peer's
// MAX_CONCURRENT_STREAMS (calls queue for a free stream; never exceeded),
// MAX_FRAME_SIZE and HEADER_TABLE_SIZE, send flow control on connection and
// stream windows (a large request waits for WINDOW_UPDATEs without holding
// the write lock), static receive windows (StreamWindow, ConnWindow) with
// WINDOW_UPDATEs after a quarter is consumed, PING acks and optional
// keepalive pings, GOAWAY (no new streams; streams the server never saw
// fail Unavailable and are retried once on another connection; the others
// finish; a new connection is dialled), RST_STREAM both ways (a cancelled
// or expired call resets its stream with CANCEL), trailers-only responses,
// grpc-status / grpc-message / grpc-status-details-bin as the same
// *status.Status error grpc-go returns, response headers and trailers for
// grpc.Header / grpc.Trailer, grpc.Peer, outgoing metadata (-bin values
// base64), message size limits, gzip-compressed responses (grpc-accept-encoding
// gzip; the receive limit bounds the decompressed size), reconnects with
// bounded exponential backoff, grpc-go's OpenTelemetry client call
// metrics (Metrics), and the reason of every connection lost
// (Config.OnLost, LostReason).
//
// A call allocates nothing of its own once the pools are warm when its
// caller passes the request metadata as an OutgoingMD option and the
// header and trailer targets with an MDStore (md.go), its messages as
// rawcodec.Message, and its deadline as a value (Start, StartIn): frames
// every call brings (HEADERS, PING, WINDOW_UPDATE) are read from the
// connection's buffer, header blocks decoded into reused maps, the call
// state pooled.
//
// It does not implement streaming calls, request compression, or
// SETTINGS_MAX_HEADER_LIST_SIZE of the peer.
package grpcdirect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/rawio"
)

// Flow-control windows announced to the server: the same static windows as
// meshgate/grpcpool's grpc-go connections (a 4 MiB message fits one stream
// window; no BDP pings).
const (
	StreamWindow = 4 << 20
	ConnWindow   = 16 << 20
)

// NotConnected is the message of the Unavailable error a call gets when
// its endpoint has no ready connection (package resilience classifies it
// as a connect failure and may retry on another endpoint).
const NotConnected = "meshgate: endpoint not connected"

// ErrClosed is returned by calls on a closed Endpoint.
var ErrClosed = errors.New("grpcdirect: endpoint closed")

// Config describes one endpoint's connections.
type Config struct {
	// Addr is the endpoint's host:port.
	Addr string
	// Authority is the :authority of every call; default Addr.
	Authority string
	// Conns is the number of connections (default 1).
	Conns int
	// TLS, when set, returns the tls.Config of one handshake (ALPN "h2"
	// is added); nil dials plaintext HTTP/2 (prior knowledge).
	TLS func(ctx context.Context, addr string) (*tls.Config, error)
	// MaxRecvMsgSize and MaxSendMsgSize bound messages (default 4 MiB).
	MaxRecvMsgSize, MaxSendMsgSize int
	// KeepaliveTime, when positive, sends a PING after that long without
	// any frame from the server; no ack within KeepaliveTimeout (default
	// 20s) closes the connection.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// BackoffBase and BackoffMax bound reconnect delays (defaults 500ms and
	// 5s; multiplier 1.6, jitter ±20%).
	BackoffBase, BackoffMax time.Duration
	// ConnectTimeout bounds one dial with its TLS and SETTINGS exchange
	// (default 5s).
	ConnectTimeout time.Duration
	// WriteTimeout bounds how long one write to the connection may block
	// (an upstream that stops reading fills the socket buffers): the
	// connection is then closed and its calls fail Unavailable, so no
	// caller waits on it for ever (default 10s; armed with slack, between
	// WriteTimeout and 9/8 of it, so not re-armed on every write).
	WriteTimeout time.Duration
	// UserAgent is sent as user-agent (default "meshgate").
	UserAgent string
	// Metrics, when set, records grpc-go's client call metrics (metrics.go).
	Metrics *Metrics
	// OnState, when set, is called when a connection becomes ready or
	// stops being ready (for readiness reporting). It must not block.
	OnState func()
	// OnLost, when set, is called once for each established connection
	// that closes for another reason than Close, with why (LostProtocol,
	// LostGoAway, ...: LostReason). It must not block.
	OnLost func(reason string)
}

func (c *Config) defaults() {
	if c.Authority == "" {
		c.Authority = c.Addr
	}
	if c.Conns <= 0 {
		c.Conns = 1
	}
	if c.MaxRecvMsgSize <= 0 {
		c.MaxRecvMsgSize = 4 << 20
	}
	if c.MaxSendMsgSize <= 0 {
		c.MaxSendMsgSize = 4 << 20
	}
	if c.KeepaliveTimeout <= 0 {
		c.KeepaliveTimeout = 20 * time.Second
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 5 * time.Second
	}
	c.BackoffBase = min(c.BackoffBase, c.BackoffMax)
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.UserAgent == "" {
		c.UserAgent = "meshgate"
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
}

// Endpoint is the connections to one gRPC server address. It is safe for
// concurrent use.
type Endpoint struct {
	cfg    Config
	scheme string
	slots  []*slot
	next   atomic.Uint32

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{}      // closed and replaced on every slot state change
	live    map[*conn]struct{} // every open conn, draining ones included
}

// slot states.
const (
	stConnecting = iota
	stReady
	stFailure
	stClosed
)

// slot is one reconnecting connection of an Endpoint.
type slot struct {
	e       *Endpoint
	state   int   // under e.mu
	failed  bool  // under e.mu: a dial failed since the last ready conn
	lastErr error // under e.mu
	cur     atomic.Pointer[conn]
}

// New starts connecting to cfg.Addr (every connection is dialled at once
// and redialled with backoff until Close).
func New(cfg Config) *Endpoint {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	e := &Endpoint{cfg: cfg, scheme: "http", ctx: ctx, cancel: cancel, changed: make(chan struct{}), live: map[*conn]struct{}{}}
	if cfg.TLS != nil {
		e.scheme = "https"
	}
	for range cfg.Conns {
		s := &slot{e: e}
		e.slots = append(e.slots, s)
		e.wg.Add(1)
		go s.run()
	}
	return e
}

// Addr is the endpoint's address.
func (e *Endpoint) Addr() string { return e.cfg.Addr }

// Close closes every connection now; calls in flight fail Unavailable. It
// returns once every goroutine of the endpoint has ended.
func (e *Endpoint) Close() {
	e.cancel()
	e.mu.Lock()
	live := make([]*conn, 0, len(e.live))
	for c := range e.live {
		live = append(live, c)
	}
	e.mu.Unlock()
	for _, c := range live {
		c.close(ErrClosed)
	}
	e.wg.Wait()
}

// Ready reports whether connection i has a ready HTTP/2 connection.
func (e *Endpoint) Ready(i int) bool {
	if i < 0 || i >= len(e.slots) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.slots[i].state == stReady
}

// AnyReady reports whether some connection is ready.
func (e *Endpoint) AnyReady() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.slots {
		if s.state == stReady {
			return true
		}
	}
	return false
}

// LastError is the last connection failure (nil after a success).
func (e *Endpoint) LastError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.slots {
		if s.failed && s.lastErr != nil {
			return s.lastErr
		}
	}
	return nil
}

// Conns is the number of connections.
func (e *Endpoint) Conns() int { return len(e.slots) }

func (e *Endpoint) setState(s *slot, st int, err error) {
	e.mu.Lock()
	if s.state == stClosed {
		e.mu.Unlock()
		return
	}
	s.state = st
	switch st {
	case stReady:
		s.failed = false
	case stFailure:
		s.failed, s.lastErr = true, err
	}
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	if e.cfg.OnState != nil {
		e.cfg.OnState()
	}
}

// run dials, serves and redials slot s until the endpoint closes.
func (s *slot) run() {
	e := s.e
	defer e.wg.Done()
	defer e.setState(s, stClosed, nil)
	fails := 0
	for {
		e.setState(s, stConnecting, nil)
		c, err := dial(e)
		if err != nil {
			if e.ctx.Err() != nil {
				return
			}
			e.setState(s, stFailure, err)
			fails++
			if !sleepCtx(e.ctx, backoff(e.cfg.BackoffBase, e.cfg.BackoffMax, fails)) {
				return
			}
			continue
		}
		fails = 0
		e.mu.Lock()
		e.live[c] = struct{}{}
		e.mu.Unlock()
		if e.ctx.Err() != nil { // closed while dialling
			c.close(ErrClosed)
			return
		}
		s.cur.Store(c)
		e.setState(s, stReady, nil)
		e.wg.Add(1)
		go func() { defer e.wg.Done(); c.bgLoop() }()
		// Serve until the conn stops taking streams (GOAWAY or death).
		select {
		case <-c.unusable:
		case <-e.ctx.Done():
			c.close(ErrClosed)
			s.cur.CompareAndSwap(c, nil)
			return
		}
		s.cur.CompareAndSwap(c, nil)
		if e.ctx.Err() != nil {
			c.close(ErrClosed)
			return
		}
		// A draining conn keeps serving its streams; a dead one failed
		// them. Redial now after a GOAWAY, after a backoff step after a
		// failure (a server that accepts and dies at once is not hammered).
		if c.deadErr() != nil && !c.wasGoAway() {
			fails++
			e.setState(s, stFailure, c.deadErr())
			if !sleepCtx(e.ctx, backoff(e.cfg.BackoffBase, e.cfg.BackoffMax, fails)) {
				return
			}
		}
	}
}

// backoff is grpc-go's exponential backoff: base × 1.6^(n-1) capped at
// maxD, ±20% jitter.
func backoff(base, maxD time.Duration, n int) time.Duration {
	d := float64(base)
	for i := 1; i < n && d < float64(maxD); i++ {
		d *= 1.6
	}
	d = min(d, float64(maxD))
	d *= 1 + 0.2*(rand.Float64()*2-1)
	return time.Duration(d)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// closedCh is a closed channel: a wait that ends at once.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// pick returns a ready conn with a free stream, starting round robin; when
// every ready conn is at its stream limit it returns one to queue on. nil
// conn: none ready; then wait is a channel to wait on (nil: fail fast) and
// err the reason.
func (e *Endpoint) pick(skip *conn) (c *conn, wait <-chan struct{}, err error) {
	n := uint32(len(e.slots))
	start := e.next.Add(1)
	var full *conn
	for i := range n {
		cc := e.slots[(start+i)%n].cur.Load()
		if cc == nil || cc == skip || !cc.usable() {
			continue
		}
		if cc.hasRoom() {
			return cc, nil, nil
		}
		if full == nil {
			full = cc
		}
	}
	if full != nil {
		return full, nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var last error
	for _, s := range e.slots {
		if cc := s.cur.Load(); s.state == stReady && cc != nil && cc != skip && cc.usable() {
			// It became ready after the scan above (e.changed was
			// replaced meanwhile): look again at once.
			return nil, closedCh, nil
		}
	}
	for _, s := range e.slots {
		if s.state == stReady || (s.state == stConnecting && !s.failed) {
			return nil, e.changed, nil
		}
		if s.lastErr != nil {
			last = s.lastErr
		}
	}
	if e.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	return nil, nil, last
}

// Invoke makes a unary call of method ("/pkg.Service/Method") with the
// raw codec: req and reply are the types meshgate/rawcodec handles. The
// call options honoured are grpc.Header, grpc.Trailer, grpc.Peer,
// grpc.MaxCallRecvMsgSize and grpc.MaxCallSendMsgSize; others are ignored.
// Errors are *status.Status errors as grpc-go returns them.
func (e *Endpoint) Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) (err error) {
	cl := getCall()
	defer putCall(cl)
	cl.applyOpts(e, opts)
	var rec callRecord
	if e.cfg.Metrics != nil {
		rec.begin(e.cfg.Metrics, method, cl.static)
		rec.startAttempt(ctx)
		defer func() {
			c := status.Code(err)
			rec.endAttempt(ctx, cl, c)
			rec.endCall(ctx, c)
		}()
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if err := cl.marshal(req); err != nil {
		return err
	}
	if err := e.attempts(ctx, cl, method, &rec); err != nil {
		cl.deliverMD()
		return err
	}
	return cl.finishReply(reply)
}

// attempts runs marshalled call cl until it completes, waiting for a
// connection and retrying a refused stream once on another one; the
// error is Invoke's (nil: cl holds the reply).
func (e *Endpoint) attempts(ctx context.Context, cl *call, method string, rec *callRecord) error {
	var skip *conn
	for attempt := 0; ; attempt++ {
		c, wait, err := e.pick(skip)
		if c == nil {
			if wait == nil {
				if err == ErrClosed {
					return status.Error(codes.Unavailable, ErrClosed.Error())
				}
				// The exact message lets package resilience classify a
				// connect failure; the cause is the endpoint's LastError.
				return status.Error(codes.Unavailable, NotConnected)
			}
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		err = c.roundTrip(ctx, cl, method)
		if err == errRefused && attempt == 0 && ctx.Err() == nil {
			// The server never processed the stream (GOAWAY, REFUSED_STREAM):
			// retry once on another connection, as grpc-go's transparent
			// retry does.
			skip = c
			rec.endAttempt(ctx, cl, codes.Unavailable)
			cl.reset()
			rec.startAttempt(ctx)
			continue
		}
		if err == errRefused {
			err = status.Error(codes.Unavailable, "grpcdirect: stream refused by the server (GOAWAY)")
		}
		return err
	}
}

// dial connects, handshakes TLS and exchanges SETTINGS within
// ConnectTimeout.
func dial(e *Endpoint) (*conn, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", e.cfg.Addr)
	if err != nil {
		return nil, err
	}
	raw = rawio.Wrap(raw)
	nc := raw
	if e.cfg.TLS != nil {
		tc, err := e.cfg.TLS(ctx, e.cfg.Addr)
		if err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("grpcdirect: tls config: %w", err)
		}
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"}
		tlsConn := tls.Client(raw, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("grpcdirect: tls handshake with %s: %w", e.cfg.Addr, err)
		}
		if p := tlsConn.ConnectionState().NegotiatedProtocol; p != "h2" {
			_ = raw.Close()
			return nil, fmt.Errorf("grpcdirect: %s negotiated ALPN %q, not h2", e.cfg.Addr, p)
		}
		nc = tlsConn
	}
	c := newConn(e, nc)
	if err := c.handshake(ctx); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}
