// Package inbound serves private listeners: a listener that speaks a
// private codec routes each request frame by cmd (and uin) either to a gRPC
// upstream (the frame becomes a unary gRPC call and the reply a frame with
// the same seq) or to a private upstream (the frame is proxied through an
// upstream.PrivatePool, which assigns its own seq; the reply goes back with
// the client's).
//
// Per connection one goroutine reads frames (codec.Reader; an idle plain
// TCP connection waits on a small fresh goroutine without a read buffer,
// and after Options.IdleGrace in the listener's connio.Parker without any
// goroutine, idle.go); each request is dispatched to its own goroutine, so many
// requests are in flight at once (pipelining) and replies go out in
// completion order. A private → private request on a one-attempt route
// is instead sent by the reader itself and answered from the upstream
// connection's reader, with no goroutine hand-off (async.go); so is a
// private → gRPC request to a direct gRPC upstream, answered from the
// HTTP/2 connection's reader (asyncgrpc.go). Replies are written
// under a mutex by whichever goroutine finds the socket free, which keeps
// writing while others append: writes coalesce under load without a
// dedicated writer goroutine. When a connection reaches its in-flight cap,
// reading stops until a reply completes (backpressure to the client).
//
// Local answers (no upstream contacted):
//   - heartbeat → RESPONSE|HEARTBEAT with the same seq;
//   - unknown cmd → result 1 (none for ONEWAY);
//   - duplicate seq while the first request with that seq is still in
//     flight on the connection → result 2 for the duplicate (the first one
//     still gets its own reply);
//   - auth failure (missing extension, unknown key, bad MAC, stale or future
//     timestamp, replayed nonce, replay cache full) → result 3. A present
//     but malformed auth extension closes the connection like any
//     malformed frame. Replay protection and its memory bound: auth.go,
//     nonce.go;
//   - authorization: a cmd the table's policy does not allow for the
//     verified key id → result 4, before any route lookup.
//
// Resource bounds: a connection past Options.MaxConnections, or one that
// would use a descriptor of the fd reserve, is closed as soon as it is
// accepted (meshgate_connections_rejected_total, one Warn line a second at
// most); read buffers grow with the bytes received and shrink after a
// large frame (codec.Reader); error messages sent back to clients are
// bounded and never carry upstream addresses or socket errors.
//
// A malformed frame closes only its connection, after the replies of
// requests already in flight have been written; one Warn line per
// connection and a counter by reason. Frames with RESPONSE or PUSH set are
// ignored (counted).
package inbound

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/connlimit"
	"github.com/meshgate/meshgate/meshgate/push"
	"github.com/meshgate/meshgate/meshgate/rawio"
	"github.com/meshgate/meshgate/meshgate/telemetry"
)

// Errors.
var (
	ErrClosed = errors.New("inbound: server closed")
)

// Options configure a Server.
type Options struct {
	// Name is the listener name (metrics label, logs).
	Name string
	// Codec is the private protocol spoken on the listener.
	Codec codec.Codec
	// Logger is tagged with the listener; nil discards.
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *admin.Metrics
	// DrainQuiet is how long a draining connection with nothing in flight
	// must stay silent before it is closed; default 250ms.
	DrainQuiet time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// MaxConnections caps open downstream connections; a connection past
	// it is closed as soon as it is accepted (counted in
	// meshgate_connections_rejected_total, logged at most once a second).
	// 0 = no cap.
	MaxConnections int
	// FDReserve refuses a connection that would use one of the last
	// FDReserve file descriptors below RLIMIT_NOFILE, keeping them for the
	// admin endpoint, gRPC listeners and upstreams; 0 = none.
	FDReserve int
	// SendTimeout bounds one socket write to a client: a client that stops
	// reading is disconnected and its queued replies released. 0 = the
	// table's idle timeout.
	SendTimeout time.Duration
	// Replay, when set, is the replay cache shared with the process's other
	// private listeners (see ReplayCache); nil starts an empty one.
	Replay *ReplayCache
	// Telemetry records spans and access-log lines; nil = none.
	Telemetry *telemetry.Hub
	// IdleGrace: a plain-TCP connection idle this long waits without a goroutine (idle.go); 0: 200 ms, < 0: never.
	IdleGrace time.Duration
}

// Server serves one private listener.
type Server struct {
	opts  Options
	log   *slog.Logger
	codec codec.Codec
	table atomic.Pointer[Table]
	auth  authState

	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	conns    map[*conn]struct{}
	closed   bool
	draining atomic.Bool
	connWG   sync.WaitGroup
	accepted atomic.Int64

	// pre-resolved metrics (nil-safe wrappers)
	mInFlight   prometheus.Gauge
	mConns      prometheus.Gauge
	mHeartbeats prometheus.Counter
	mRejMax     prometheus.Counter
	mRejFD      prometheus.Counter
	refusals    connlimit.LogLimiter
	badFrames   connlimit.LogLimiter // malformed-frame closes: a client controls their rate

	// push (push.go)
	pushCfg  atomic.Pointer[pushConfig]
	pushOnce sync.Once
	registry *push.Registry

	work connio.Workers[*request] // requests on long-lived goroutines

	readers sync.Pool    // *readerBox: frame readers of plain TCP connections (idle.go)
	held    atomic.Int64 // pooled readers held by connections (idle.go)
	waits   atomic.Int64 // idle-wait goroutines started (idle.go)

	park connio.Parker // idle connections without a goroutine (idle.go)
}

// New returns a server using table t (replace it with SetTable).
func New(opts Options, t *Table) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DrainQuiet <= 0 {
		opts.DrainQuiet = 250 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.IdleGrace == 0 {
		opts.IdleGrace = defaultIdleGrace
	}
	s := &Server{
		opts:  opts,
		log:   opts.Logger.With("component", "inbound", "listener", opts.Name),
		codec: opts.Codec,
		lns:   map[net.Listener]struct{}{},
		conns: map[*conn]struct{}{},
	}
	if m := opts.Metrics; m != nil {
		s.mInFlight = m.InFlight.WithLabelValues(opts.Name)
		s.mConns = m.DownstreamConns.WithLabelValues(opts.Name)
		s.mHeartbeats = m.Heartbeats.WithLabelValues(opts.Name)
		if rej, err := connlimit.NewRejected(m.Registry); err == nil {
			s.mRejMax = rej.WithLabelValues(opts.Name, connlimit.ReasonMaxConnections)
			s.mRejFD = rej.WithLabelValues(opts.Name, connlimit.ReasonFDReserve)
		}
	}
	s.refusals.Log = s.log
	s.badFrames.Log = s.log
	s.auth.init(s)
	s.work.Init((*request).run)
	s.readers.New = s.newReaderBox
	s.table.Store(t)
	return s
}

// SetTable swaps the routing table; requests already dispatched keep the
// one they started with.
func (s *Server) SetTable(t *Table) { s.table.Store(t) }

// Table returns the current routing table.
func (s *Server) Table() *Table { return s.table.Load() }

// Codec returns the listener's codec.
func (s *Server) Codec() codec.Codec { return s.codec }

// Conns is the number of open downstream connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Serve accepts connections on ln until Shutdown or Close; it then returns
// nil (ErrClosed if the server was already closed).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed || s.draining.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			stopping := s.closed || s.draining.Load()
			s.mu.Unlock()
			if stopping || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Resource exhaustion (EMFILE...): back off and retry.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if connlimit.InReserve(nc, s.opts.FDReserve) {
			s.refuse(nc, connlimit.ReasonFDReserve, s.mRejFD)
			continue
		}
		if tc, ok := rawio.TCP(nc); ok {
			_ = tc.SetNoDelay(true)
		}
		s.mu.Lock()
		if s.closed || s.draining.Load() {
			s.mu.Unlock()
			_ = nc.Close()
			return nil
		}
		if max := s.opts.MaxConnections; max > 0 && len(s.conns) >= max {
			s.mu.Unlock()
			s.refuse(nc, connlimit.ReasonMaxConnections, s.mRejMax)
			continue
		}
		c := s.newConn(nc)
		s.conns[c] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		s.accepted.Add(1)
		if s.mConns != nil {
			s.mConns.Inc()
		}
		go c.serve()
	}
}

// Shutdown stops accepting, lets open connections finish: a connection is
// closed once nothing is in flight on it and the client has been silent for
// DrainQuiet (replies are always written first). When ctx ends first, the
// rest are closed hard (calls cancelled). It returns ctx.Err() in that case.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	for _, c := range s.stopAccepting(false) {
		c.drainNudge()
	}
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
		s.Close()
		return nil
	case <-ctx.Done():
	}
	// The drain timed out: end the calls still in flight; their clients
	// are answered UNAVAILABLE ("server shutting down") and each
	// connection closes once its replies are written, for at most
	// shutdownReplies; then whatever is left is closed hard.
	for _, c := range s.stopAccepting(false) {
		c.stop(errShuttingDown)
		c.drainNudge()
	}
	t := time.NewTimer(shutdownReplies)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	s.Close()
	<-done
	return ctx.Err()
}

// shutdownReplies bounds the writing of the answers to the calls a
// timed-out drain ends.
const shutdownReplies = time.Second

// Close closes the listeners and every connection now, cancelling calls
// in flight, and waits for the connection goroutines to finish.
func (s *Server) Close() {
	for _, c := range s.stopAccepting(true) {
		c.abort()
	}
	s.connWG.Wait()
	s.park.Close()
	s.work.Close()
}

// stopAccepting closes the listeners (marking the server closed when
// closed is set) and returns a snapshot of the open connections.
func (s *Server) stopAccepting(closed bool) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if closed {
		s.closed = true
	}
	for ln := range s.lns {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if s.mConns != nil {
		s.mConns.Dec()
	}
	s.connWG.Done()
}

// refuse closes a connection refused at accept, counts and logs it (at
// most one line a second).
func (s *Server) refuse(nc net.Conn, reason string, ctr prometheus.Counter) {
	if ctr != nil {
		ctr.Inc() // before the close: whoever sees the close sees the count
	}
	_ = nc.Close()
	s.refusals.Warn("connection refused", "reason", reason, "max_connections", s.opts.MaxConnections)
}

func (s *Server) rejected(reason string) {
	if m := s.opts.Metrics; m != nil {
		m.Rejected.WithLabelValues(s.opts.Name, reason).Inc()
	}
}

func (s *Server) malformed(reason string) {
	if m := s.opts.Metrics; m != nil {
		m.Malformed.WithLabelValues(s.opts.Name, reason).Inc()
	}
}

// errorReason is a bounded label for a decode error.
func errorReason(err error) string {
	var fe *codec.FieldError
	switch {
	case errors.As(err, &fe):
		return fe.Field
	case errors.Is(err, codec.ErrFrameTooLarge):
		return "frame_too_large"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "read_timeout"
	}
	return "malformed"
}
