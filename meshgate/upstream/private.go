// Package upstream is MeshGate's upstream model, shared by both
// protocols: Upstream (what a route targets; reference counted, one retire
// policy), Set (one generation's upstreams by name), Endpoint (all
// per-endpoint state) and Balancer (round robin, least request by power of
// two choices, consistent hash on uin). It also holds the private-protocol
// pool: per endpoint a few multiplexed privconn connections, kept up with
// exponential backoff and jitter. The gRPC pool is package grpcpool.
//
// An endpoint with no live connection is ejected: pickers skip it until a
// reconnect succeeds. With no healthy endpoint a request fails at once with
// an error wrapping ErrNoHealthy (gRPC UNAVAILABLE, result 7).
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/retire"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// Sentinel errors.
var (
	// ErrNoHealthy: every endpoint is ejected (maps to UNAVAILABLE / 7).
	ErrNoHealthy = errors.New("upstream: no healthy endpoint")
	// ErrPoolClosed: the pool was closed (maps to UNAVAILABLE / 7).
	ErrPoolClosed = errors.New("upstream: pool closed")
	// ErrOverloaded: every live connection of the chosen endpoint is at
	// its in-flight cap (maps to RESOURCE_EXHAUSTED / 6).
	ErrOverloaded = errors.New("upstream: endpoint overloaded")
	// ErrConfig: the upstream config cannot back a private pool.
	ErrConfig = errors.New("upstream: bad private upstream config")
)

// Option tunes a PrivatePool.
type Option func(*poolOptions)

type poolOptions struct {
	backoffBase, backoffMax time.Duration
	dialTimeout             time.Duration
	liveness                time.Duration
	writeTimeout            time.Duration
	tlsRefresh              time.Duration
	onPush                  func(*codec.Frame) // push.go
	epRequests              *prometheus.CounterVec
	resilience              []resilience.Option // resilience.go
}

// WithEndpointRequests counts every call sent in vec, labelled upstream,
// endpoint and gRPC code (admin.Metrics.UpstreamRequests).
func WithEndpointRequests(vec *prometheus.CounterVec) Option {
	return func(o *poolOptions) { o.epRequests = vec }
}

// WithBackoff sets the reconnect backoff (default 50ms doubling to 5s, ±20%
// jitter).
func WithBackoff(base, max time.Duration) Option {
	return func(o *poolOptions) { o.backoffBase, o.backoffMax = base, max }
}

// WithDialTimeout bounds one connection attempt (default 2s).
func WithDialTimeout(d time.Duration) Option { return func(o *poolOptions) { o.dialTimeout = d } }

// WithLiveness overrides the privconn liveness timeout (default 3 × heartbeat).
func WithLiveness(d time.Duration) Option { return func(o *poolOptions) { o.liveness = d } }

// WithWriteTimeout bounds each socket write to an endpoint (default
// privconn.DefaultWriteTimeout): a backend that stops reading loses its
// connection after this long without progress.
func WithWriteTimeout(d time.Duration) Option { return func(o *poolOptions) { o.writeTimeout = d } }

// WithTLSRefresh sets how often TLS files are re-read (default
// config.DefaultTLSRefresh).
func WithTLSRefresh(d time.Duration) Option { return func(o *poolOptions) { o.tlsRefresh = d } }

// Stats is a snapshot of a pool.
type Stats struct {
	Name      string
	Endpoints int
	Healthy   int
	Conns     int
	InFlight  int
	Late      uint64
	Unknown   uint64
	PerEP     []EndpointStats
}

// EndpointStats is one endpoint's state.
type EndpointStats struct {
	Addr     string
	Healthy  bool
	Conns    int
	InFlight int
	Requests uint64
	Failures uint64
	Latency  time.Duration // EWMA
}

// Endpoints returns the pool's endpoints (their live state).
func (p *PrivatePool) Endpoints() []*Endpoint { return p.eps }

// PrivatePool is a load-balanced set of multiplexed connections to the
// endpoints of one private upstream. Safe for concurrent use.
type PrivatePool struct {
	guard *resilience.Guard // resilience.go
	name  string
	codec codec.Codec
	lb    string
	opts  poolOptions
	cfg   config.Upstream
	log   *slog.Logger
	m     *poolMetrics
	tls   *tlsconf.Client // nil: plaintext

	eps []*Endpoint

	late, unknown atomic.Uint64

	// reference counting (Acquire/Release/Retire, see Upstream)
	refs     retire.Refs
	doneOnce sync.Once
	done     chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewPrivatePool builds the pool for u (Protocol "private") speaking c and
// starts connecting in the background; it does not wait for connections.
// reg may be nil; metrics are shared by name across pools (hot reload).
func NewPrivatePool(u config.Upstream, c codec.Codec, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*PrivatePool, error) {
	if u.Protocol != config.ProtoPrivate {
		return nil, fmt.Errorf("%w: upstream %q protocol is %q", ErrConfig, u.Name, u.Protocol)
	}
	if len(u.Endpoints) == 0 || c == nil {
		return nil, fmt.Errorf("%w: upstream %q needs endpoints and a codec", ErrConfig, u.Name)
	}
	// u comes resolved (config.ApplyDefaults / Upstream.WithDefaults).
	switch {
	case u.Connections <= 0:
		return nil, fmt.Errorf("%w: upstream %q: connections must be positive (unresolved config?)", ErrConfig, u.Name)
	case u.MaxInFlight <= 0:
		return nil, fmt.Errorf("%w: upstream %q: max_in_flight must be positive (unresolved config?)", ErrConfig, u.Name)
	case u.Heartbeat == 0:
		return nil, fmt.Errorf("%w: upstream %q: heartbeat unset (unresolved config?)", ErrConfig, u.Name)
	}
	o := poolOptions{backoffBase: 50 * time.Millisecond, backoffMax: 5 * time.Second, dialTimeout: 2 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if u.WriteTimeout > 0 {
		o.writeTimeout = u.WriteTimeout // upstreams[].write_timeout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := metricsFor(reg)
	if err != nil {
		return nil, err
	}
	var tc *tlsconf.Client
	if u.TLS != nil {
		if tc, err = tlsconf.NewClient(u.TLS, tlsconf.Options{Refresh: o.tlsRefresh}); err != nil {
			return nil, fmt.Errorf("%w: upstream %q: tls: %w", ErrConfig, u.Name, err)
		}
	}
	p := &PrivatePool{
		name: u.Name, codec: c, lb: u.LB, opts: o, cfg: u,
		log:  logger.With("component", "upstream", "upstream", u.Name),
		m:    m.forPool(u.Name),
		tls:  tc,
		done: make(chan struct{}),
	}
	// A retired pool closes on a goroutine of its own: its last call may
	// end on one of its connections' readers (a StartPolicy callback),
	// which Close waits for.
	p.refs.Init(func() { go p.Close() })
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for _, a := range u.Endpoints {
		e := NewEndpoint(a)
		e.slots = make([]atomic.Pointer[privconn.Conn], u.Connections)
		e.reqVec, e.upstream = o.epRequests, u.Name
		p.eps = append(p.eps, e)
	}
	switch u.LB {
	case config.LBRoundRobin, config.LBLeastRequest, config.LBConsistentHash, "":
	default:
		if tc != nil {
			tc.Close()
		}
		return nil, fmt.Errorf("%w: upstream %q: unknown lb %q", ErrConfig, u.Name, u.LB)
	}
	p.newGuard(u.LB, u.Endpoints, u.Resilience, p.opts.resilience)
	p.m.endpoints.Add(float64(len(p.eps)))
	for _, e := range p.eps {
		for s := range e.slots {
			p.wg.Add(1)
			go p.keep(e, s)
		}
	}
	return p, nil
}

// Name is the upstream name.
func (p *PrivatePool) Name() string { return p.name }

// keep maintains one connection slot of e: dial, wait for the connection to
// close, back off, redial.
func (p *PrivatePool) keep(e *Endpoint, slot int) {
	defer p.wg.Done()
	backoff := time.Duration(0)
	tlsWarned := false
	var secure func(context.Context) (*tls.Config, error)
	if p.tls != nil {
		secure = func(ctx context.Context) (*tls.Config, error) { return p.tls.Config(ctx, e.addr) }
	}
	for {
		if p.ctx.Err() != nil {
			return
		}
		dctx, cancel := context.WithTimeout(p.ctx, p.opts.dialTimeout)
		cn, err := privconn.Dial(dctx, e.addr, p.codec, privconn.Options{
			MaxInFlight:  p.cfg.MaxInFlight,
			Heartbeat:    p.cfg.Heartbeat,
			Liveness:     p.opts.liveness,
			WriteTimeout: p.opts.writeTimeout,
			Logger:       p.log,
			OnLate:       p.onLate,
			OnUnknownSeq: p.onUnknown,
			OnPush:       p.opts.onPush,
			TLS:          secure,
		})
		cancel()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.m.dialErrors.Inc()
			backoff = nextBackoff(backoff, p.opts.backoffBase, p.opts.backoffMax)
			if errors.Is(err, privconn.ErrTLS) && !tlsWarned {
				// Certificates rarely fix themselves: say so once per
				// failing streak, the retries stay at Debug.
				tlsWarned = true
				p.log.Warn("tls handshake failed", "endpoint", e.addr, "err", err, "retry_in", backoff)
			} else {
				p.log.Debug("dial failed", "endpoint", e.addr, "err", err, "retry_in", backoff)
			}
			if !p.sleep(backoff) {
				return
			}
			continue
		}
		backoff, tlsWarned = 0, false
		e.slots[slot].Store(cn)
		if e.live.Add(1) == 1 {
			e.res.SetDown(false)
			p.m.healthy.Inc()
			p.log.Debug("endpoint healthy", "endpoint", e.addr)
		}
		p.m.conns.Inc()
		select {
		case <-cn.Done():
		case <-p.ctx.Done():
		}
		e.slots[slot].Store(nil)
		if e.live.Add(-1) == 0 {
			e.res.SetDown(true)
			p.m.healthy.Dec()
			p.m.ejections.Inc()
			p.log.Debug("endpoint ejected", "endpoint", e.addr, "err", cn.Err())
		}
		p.m.conns.Dec()
		_ = cn.Close()
		if p.ctx.Err() != nil {
			return
		}
		p.m.reconnects.Inc()
		p.m.lost(cn.Err())
		// A connection that dropped: wait a little (jittered) before
		// redialing so a restarting backend is not hammered.
		if !p.sleep(jitter(p.opts.backoffBase)) {
			return
		}
	}
}

func nextBackoff(cur, base, max time.Duration) time.Duration {
	if cur <= 0 {
		cur = base
	} else {
		cur *= 2
	}
	if cur > max {
		cur = max
	}
	return jitter(cur)
}

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*4/5 + rand.N(d*2/5+1)
}

func (p *PrivatePool) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

func (p *PrivatePool) onLate() {
	p.late.Add(1)
	p.m.late.Inc()
}

func (p *PrivatePool) onUnknown() {
	p.unknown.Add(1)
	p.m.unknown.Inc()
}

// pick chooses an endpoint for uin through the pool's Guard (the
// configured lb over adaptive weights, skipping ejected endpoints and
// those without a live connection); nil when none is eligible.
func (p *PrivatePool) pick(uin uint64) *Endpoint {
	ge := p.guard.Pick(uin)
	if ge == nil {
		return nil
	}
	return p.eps[ge.Index()]
}

// maxPicks bounds how many times one request picks an endpoint and a
// connection: a pick that finds no live connection, or a request that
// could not be written, is tried again.
const maxPicks = 3

// conns yields, up to maxPicks times, an endpoint the policy picks for
// uin and a live connection of it with room; a pick whose endpoint has no
// such connection right now counts but yields nothing. It stops when no
// endpoint is healthy.
func (p *PrivatePool) conns(uin uint64) iter.Seq2[*Endpoint, *privconn.Conn] {
	return func(yield func(*Endpoint, *privconn.Conn) bool) {
		for range maxPicks {
			e := p.pick(uin)
			if e == nil {
				return
			}
			if cn, _ := e.conn(); cn != nil && !yield(e, cn) {
				return
			}
		}
	}
}

// picksFailed is the error of a request whose every pick failed, the last
// with lastErr (not nil).
func (p *PrivatePool) picksFailed(lastErr error) error {
	if errors.Is(lastErr, privconn.ErrTooManyInFlight) {
		return fmt.Errorf("%w: %s: %w", ErrOverloaded, p.name, lastErr)
	}
	return fmt.Errorf("%w: %s: %w", ErrNoHealthy, p.name, lastErr)
}

// conn returns a live connection of e with room, round robin.
func (e *Endpoint) conn() (*privconn.Conn, bool) {
	n := len(e.slots)
	start := int(e.rr.Add(1))
	for k := range n {
		cn := e.slots[(start+k)%n].Load()
		if cn == nil {
			continue
		}
		select {
		case <-cn.Done():
			continue
		default:
		}
		return cn, true
	}
	return nil, false
}

// Do sends req to an endpoint chosen by the pool's policy (req.UIN is the
// consistent-hash key) and returns the reply, owned by the caller. req.Seq
// is overwritten with the connection's own sequence number. A request that
// could not be written (connection found closed, in-flight cap) is tried on
// another connection; one that was written is never retried.
func (p *PrivatePool) Do(ctx context.Context, req *codec.Frame) (*codec.Frame, error) {
	if p.guard != nil {
		return p.DoPolicy(ctx, req, &onePolicy)
	}
	if p.ctx.Err() != nil {
		return nil, ErrPoolClosed
	}
	var lastErr error
	for e, cn := range p.conns(req.UIN) {
		reportEndpoint(ctx, e.addr)
		e.begin()
		resp, err := cn.Do(ctx, req)
		e.end(err)
		if err == nil {
			e.count(resultCode(resp.Result))
		} else if !errors.Is(err, privconn.ErrNotSent) && !errors.Is(err, privconn.ErrTooManyInFlight) {
			e.count(status.Code(Status(ctx, err)))
		}
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if errors.Is(err, privconn.ErrTooManyInFlight) {
			continue
		}
		if errors.Is(err, privconn.ErrNotSent) {
			continue
		}
		return nil, p.wrap(e, err)
	}
	if lastErr != nil {
		return nil, p.picksFailed(lastErr)
	}
	p.m.noHealthy.Inc()
	return nil, fmt.Errorf("%w: %s (%d endpoints, all ejected)", ErrNoHealthy, p.name, len(p.eps))
}

func (p *PrivatePool) wrap(e *Endpoint, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, codec.ErrInvalidFrame) {
		return err
	}
	return fmt.Errorf("upstream %s endpoint %s: %w", p.name, e.addr, err)
}

// Send sends a ONEWAY frame to an endpoint chosen by the policy.
func (p *PrivatePool) Send(ctx context.Context, req *codec.Frame) error {
	if p.ctx.Err() != nil {
		return ErrPoolClosed
	}
	for e, cn := range p.conns(req.UIN) {
		reportEndpoint(ctx, e.addr)
		err := cn.Send(ctx, req)
		if err != nil && errors.Is(err, privconn.ErrNotSent) {
			continue
		}
		return err
	}
	p.m.noHealthy.Inc()
	return fmt.Errorf("%w: %s", ErrNoHealthy, p.name)
}

// Endpoint returns the address Do would pick for uin right now ("" if
// none); for tests and debugging.
func (p *PrivatePool) Endpoint(uin uint64) string {
	if e := p.pick(uin); e != nil {
		return e.addr
	}
	return ""
}

// Stats returns a snapshot.
func (p *PrivatePool) Stats() Stats {
	s := Stats{Name: p.name, Endpoints: len(p.eps), Late: p.late.Load(), Unknown: p.unknown.Load()}
	for _, e := range p.eps {
		es := EndpointStats{Addr: e.addr, Healthy: e.Healthy(), Conns: int(e.live.Load()),
			Requests: e.requests.Load(), Failures: e.Failures(), Latency: e.Latency()}
		for i := range e.slots {
			if cn := e.slots[i].Load(); cn != nil {
				es.InFlight += cn.InFlight()
			}
		}
		if es.Healthy {
			s.Healthy++
		}
		s.Conns += es.Conns
		s.InFlight += es.InFlight
		s.PerEP = append(s.PerEP, es)
	}
	return s
}

// WaitHealthy blocks until at least n endpoints are healthy or ctx ends.
func (p *PrivatePool) WaitHealthy(ctx context.Context, n int) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if p.Stats().Healthy >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: waiting for %d healthy: %w", ErrNoHealthy, p.name, n, ctx.Err())
		case <-t.C:
		}
	}
}

// Acquire takes a reference for one call. It returns false once the pool
// is retired or closed: the caller re-reads its routing table.
func (p *PrivatePool) Acquire() bool { return p.refs.Acquire() }

// Release drops a reference taken by Acquire; the last one of a retired
// pool starts closing it (Done is closed once it has).
func (p *PrivatePool) Release() { p.refs.Release() }

// Retire marks the pool as no longer routed to; it closes once the last
// in-flight call releases it (at once if none), in the background: Done
// tells when. See RetireWithin for an upper bound.
func (p *PrivatePool) Retire() { p.refs.Retire() }

// Done is closed once the pool has closed.
func (p *PrivatePool) Done() <-chan struct{} { return p.done }

// Close closes every connection (pending requests fail with ErrClosed) and
// stops reconnecting.
func (p *PrivatePool) Close() error {
	p.refs.Closing()
	p.doneOnce.Do(func() {
		p.cancel()
		p.wg.Wait()
		if p.tls != nil {
			p.tls.Close()
		}
		p.m.endpoints.Sub(float64(len(p.eps)))
		close(p.done)
	})
	return nil
}
