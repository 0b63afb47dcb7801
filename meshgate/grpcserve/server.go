// Package grpcserve is MeshGate's own HTTP/2 server transport for gRPC
// listeners (listeners[].grpc_transport: direct, the default), the
// server-side counterpart of package grpcdirect: a fast path for unary
// calls, and every other stream delegated to an http.Handler such as
// grpc-go's server (delegate.go).
//
// HTTP/2 is spoken with golang.org/x/net/http2's Framer (reading, with
// HPACK decoding via ReadMetaHeaders and a bounded header list) and an
// hpack.Encoder per connection (writing). One goroutine per connection
// reads frames; when a stream's request is complete (HEADERS and DATA up
// to END_STREAM) it is handed to the Handler as a *Call. The handler
// answers with Call.Finish from whichever goroutine completes the call:
// Finish encodes HEADERS, DATA and trailers under the connection's write
// lock and writes them with one write (the part of a large reply beyond
// the peer's flow-control window is written when WINDOW_UPDATEs arrive,
// by the reading goroutine). There is no per-call goroutine, no writer
// goroutine and no BDP ping.
//
// The fast path serves unary calls: a stream carries exactly the request
// HEADERS, its DATA and END_STREAM. With Config.Fallback set, a Handler
// that is a FastPath decides per method at HEADERS time; the streams it
// does not serve (streaming methods, services registered on grpc-go,
// unknown methods) go to the Fallback on a goroutine of their own, with
// the request body and the response flow-controlled on the stream.
package grpcserve

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/promreg"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("grpcserve: server closed")

// Handler serves calls.
type Handler interface {
	// Start begins serving c and arranges for c.Finish to be called
	// exactly once, from any goroutine. Without Config.Blocking it runs
	// on the connection's reading goroutine and must not block; with it,
	// it runs on one of the server's workers and may block until the
	// call is answered.
	Start(c *Call)
}

// InlineStarter is an optional interface of a Config.Blocking Handler:
// TryStart runs first, on the connection's reading goroutine. It either
// starts c without blocking (and arranges for c.Finish to be called
// exactly once, as Start does) and returns true, or leaves c untouched
// and returns false: the call then goes to a worker's Start. A call that
// completes asynchronously (its reply is written by whichever goroutine
// completes it) so costs no worker hand-off.
type InlineStarter interface {
	TryStart(c *Call) bool
}

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	// Name labels the protocol error counter (the listener's name).
	Name    string
	Handler Handler
	// Fallback, when set, serves the streams whose method the Handler
	// does not serve itself (FastPath; a Handler without it serves every
	// method): a *grpc.Server's ServeHTTP, for one, on a goroutine per
	// stream (delegate.go).
	Fallback http.Handler
	// Blocking runs Handler.Start on a pool of long-lived workers
	// (4 × GOMAXPROCS, a goroutine of its own past that) instead of the
	// reading goroutine. A Handler that is also an InlineStarter gets
	// each call's TryStart on the reading goroutine first.
	Blocking bool
	// TLS, when set, terminates TLS on every accepted connection; ALPN
	// "h2" is required (a client offering no ALPN is accepted, as grpc-go
	// accepts it when the client sends no protocol list).
	TLS *tls.Config
	// MaxConcurrentStreams is advertised in SETTINGS; a stream past it
	// is refused (RST_STREAM REFUSED_STREAM). Default 100.
	MaxConcurrentStreams uint32
	// MaxInFlightPerConn caps calls being served per connection; a call
	// past it fails with RESOURCE_EXHAUSTED. 0: no cap beyond streams.
	MaxInFlightPerConn int
	// StreamWindow / ConnWindow are the receive windows granted. Default
	// 64 KiB / 1 MiB; minimum 65535.
	StreamWindow, ConnWindow int32
	// MaxRecvMsgSize / MaxSendMsgSize bound one message. Default 4 MiB.
	MaxRecvMsgSize, MaxSendMsgSize int
	// MaxHeaderListSize bounds a request's decoded header list (also
	// advertised). Default 64 KiB.
	MaxHeaderListSize uint32
	// HandshakeTimeout bounds the TLS handshake and the client preface.
	// Default 10 s.
	HandshakeTimeout time.Duration
	// RecvTimeout bounds how long a stream may take to deliver its
	// request after its headers: past it the call ends DEADLINE_EXCEEDED.
	// Default 10 s.
	RecvTimeout time.Duration
	// WriteTimeout bounds one socket write; a peer that stops reading is
	// disconnected. Default 10 s.
	WriteTimeout time.Duration
	// MaxConnectionIdle: a connection without calls for this long gets
	// GOAWAY and is closed. 0: never.
	MaxConnectionIdle time.Duration
	// IdleGrace: a plain-TCP connection without frames for this long
	// drops what its next frames can rebuild and waits without a
	// goroutine (idle.go, connio.Parker; elsewhere on a small one).
	// Default 200 ms: what a connection holds while in use (a grown stack,
	// the Framer, the HPACK encoder) is held only that long after its
	// last frame; a call after a longer pause pays the wake-up (a
	// goroutine start, two epoll_ctl, ~24 allocations: about 35 µs more
	// than a call whose goroutine waited), so a client calling more than
	// five times a second never pays it.
	IdleGrace time.Duration
	// MaxConnectionAge: GOAWAY after this long, closed hard
	// MaxConnectionAgeGrace later. 0: never.
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// KeepaliveTime: after this long without a frame from the client the
	// server PINGs it, and closes the connection when nothing arrives
	// within KeepaliveTimeout (grpc-go's keepalive.ServerParameters Time
	// and Timeout). 0: no pings.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// KeepaliveMinTime: a client that pings more often than this while
	// no call is open is sent GOAWAY ENHANCE_YOUR_CALM after a few
	// strikes. Default 5 min (grpc-go's).
	KeepaliveMinTime time.Duration
	// MaxResetsPerSecond bounds streams a client cancels per second
	// (rapid reset); past it the connection gets GOAWAY
	// ENHANCE_YOUR_CALM. Default 200.
	MaxResetsPerSecond int
	// MaxControlPerSecond bounds SETTINGS frames per second; past it
	// GOAWAY ENHANCE_YOUR_CALM. Default 100. (PINGs are bounded by the
	// keepalive policy: see KeepaliveMinTime.)
	MaxControlPerSecond int
	// Errors counts connection-level protocol errors by reason (label
	// "reason" after "listener"); nil: not counted.
	Errors *prometheus.CounterVec
	// Logger; nil discards. Nothing above Debug per frame or call.
	Logger *slog.Logger
	// Metrics records grpc-go's OpenTelemetry server metrics of the calls
	// served (metrics.go); nil: none.
	Metrics *Metrics
}

func (c *Config) setDefaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 100
	}
	if c.StreamWindow < 65535 {
		c.StreamWindow = 64 << 10
	}
	if c.ConnWindow < 65535 {
		c.ConnWindow = 1 << 20
	}
	def(&c.MaxRecvMsgSize, 4<<20)
	def(&c.MaxSendMsgSize, 4<<20)
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = 64 << 10
	}
	defD(&c.HandshakeTimeout, 10*time.Second)
	defD(&c.RecvTimeout, 10*time.Second)
	defD(&c.WriteTimeout, 10*time.Second)
	defD(&c.KeepaliveMinTime, 5*time.Minute)
	if c.KeepaliveTime > 0 {
		defD(&c.KeepaliveTimeout, 20*time.Second)
	}
	defD(&c.IdleGrace, 200*time.Millisecond)
	def(&c.MaxResetsPerSecond, 200)
	def(&c.MaxControlPerSecond, 100)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// NewErrorCounter registers (or finds) meshgate_grpc_protocol_errors_total
// in reg.
func NewErrorCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_grpc_protocol_errors_total",
		Help: "Connections of a direct-transport gRPC listener ended for a protocol violation or abuse, by listener and reason.",
	}, []string{"listener", "reason"})
	cv, err := promreg.Adopt(reg, cv)
	if err != nil {
		return nil, err
	}
	return cv, nil
}

// Server serves gRPC calls over HTTP/2 connections: unary calls on its
// fast path, other streams by its Fallback.
type Server struct {
	cfg    Config
	wk     connio.Workers[*Call] // Handler.Start of a blocking handler on long-lived goroutines
	handed atomic.Uint64         // calls dispatched to wk (HandedOff)
	in     InlineStarter         // cfg.Handler's, when Blocking; nil: none
	fast   FastPath              // cfg.Handler's, when cfg.Fallback is set; nil: every stream is the Handler's
	held   atomic.Int64          // read buffers held by connections (idle.go)
	park   connio.Parker         // idle connections without a goroutine (idle.go)

	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	conns    map[*conn]struct{}
	draining bool
	closed   bool
	idle     chan struct{} // closed when draining and no conn is left
	wg       sync.WaitGroup
}

// New returns a Server.
func New(cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, lns: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	if cfg.Handler != nil {
		s.wk.Init(cfg.Handler.Start)
	}
	if is, ok := cfg.Handler.(InlineStarter); ok && cfg.Blocking {
		s.in = is
	}
	if fp, ok := cfg.Handler.(FastPath); ok && cfg.Fallback != nil {
		s.fast = fp
	}
	return s
}

// HandedOff is the number of calls started on a worker (Config.Blocking)
// since the server was made; calls an InlineStarter started on the
// reading goroutine are not counted.
func (s *Server) HandedOff() uint64 { return s.handed.Load() }

// track runs add under s.mu, unless the server is draining or closed:
// then it closes cl (s.mu released) and returns false.
func (s *Server) track(cl io.Closer, add func()) bool {
	s.mu.Lock()
	stopped := s.draining || s.closed
	if !stopped {
		add()
	}
	s.mu.Unlock()
	if stopped {
		_ = cl.Close()
	}
	return !stopped
}

// Serve accepts connections on ln until Shutdown or Close; it returns
// ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln, func() { s.lns[ln] = struct{}{} }) {
		return ErrServerClosed
	}
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.draining || s.closed
			s.mu.Unlock()
			if done {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		if !s.track(nc, func() { s.conns[c] = struct{}{}; s.wg.Add(1) }) {
			return ErrServerClosed
		}
		go c.serve() // its last goroutine calls s.remove and s.wg.Done
	}
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.draining && len(s.conns) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// Shutdown stops accepting, sends GOAWAY on every connection and waits
// until the calls in flight have been answered and every connection has
// closed, or ctx ends (then it closes what is left and returns ctx's
// error).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.lns {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	var idle chan struct{}
	if len(s.conns) > 0 {
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle = s.idle
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	s.Close()
	return err
}

// Close closes the listeners and every connection at once (calls in
// flight are cancelled) and waits for the connections' goroutines and
// the workers.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed, s.draining = true, true
	for ln := range s.lns {
		_ = ln.Close()
	}
	for c := range s.conns {
		c.closeNow(errServerClosed)
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.park.Close()
	s.wk.Close()
}

var errServerClosed = errors.New("grpcserve: server closed")
