package grpcpool

import (
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/grpcdirect"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// newDirect builds the direct-transport endpoints of upstream u
// (config.Upstream.DirectTransport), one per Guard endpoint in the same order,
// each with u.Connections HTTP/2 connections, recording grpc-go's client
// metrics on m (nil: none) and the connections lost on lost, by reason.
func newDirect(u config.Upstream, n int, tc *tlsconf.Client, m *grpcdirect.Metrics, lost *prometheus.CounterVec) []*grpcdirect.Endpoint {
	onLost := func(reason string) { lost.WithLabelValues(reason).Inc() }
	cp := connectParams(u)
	// The same :authority and TLS name as the grpc-go ClientConns: the
	// configured server_name, else the upstream's name (docs/security-tls.md).
	authority := u.Name
	if u.TLS != nil && u.TLS.ServerName != "" {
		authority = u.TLS.ServerName
	}
	var tlsFn func(ctx context.Context, addr string) (*tls.Config, error)
	if tc != nil {
		tlsFn = func(ctx context.Context, _ string) (*tls.Config, error) {
			cfg, err := tc.Config(ctx, "")
			if err == nil && cfg.ServerName == "" {
				cfg.ServerName = authority
			}
			return cfg, err
		}
	}
	out := make([]*grpcdirect.Endpoint, len(u.Endpoints))
	for i, addr := range u.Endpoints {
		out[i] = grpcdirect.New(grpcdirect.Config{
			Addr:           addr,
			Authority:      authority,
			Conns:          n,
			TLS:            tlsFn,
			MaxRecvMsgSize: u.RecvSize(),
			MaxSendMsgSize: u.SendSize(),
			BackoffBase:    cp.Backoff.BaseDelay,
			BackoffMax:     cp.Backoff.MaxDelay,
			ConnectTimeout: cp.MinConnectTimeout,
			Metrics:        m,
			OnLost:         onLost,
		})
	}
	return out
}

// StartAt starts one attempt of a call made through the Guard (the
// caller's Guard.Do accounts for it) on ep's direct endpoint without
// waiting: grpcdirect.Endpoint.Start, the deadline a value. false: not a
// direct pool, nothing done.
func (p *Pool) StartAt(ctx context.Context, ep *resilience.Endpoint, method string, deadline time.Time, req, reply any, done func(error), opts ...grpc.CallOption) (grpcdirect.Ticket, bool) {
	if p.direct == nil {
		return grpcdirect.Ticket{}, false
	}
	return p.direct[ep.Index()].Start(ctx, method, deadline, req, reply, done, opts...), true
}

// invokeDirect makes a unary call over the direct transport. A call made
// through the Guard (resilience.WithEndpoint) goes to the endpoint it
// picked; any other call (a gRPC → gRPC proxy call) is balanced by the
// Guard here — keyed on the x-mgp-uin header for consistent hashing, the
// next endpoint with a ready connection if that one has none — and its
// outcome recorded, as the grpc-go picker does.
func (p *Pool) invokeDirect(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error {
	ep := resilience.EndpointFrom(ctx)
	if ep == nil {
		ep = atEndpoint(opts)
	}
	if ep != nil {
		return p.direct[ep.Index()].Invoke(ctx, method, req, reply, opts...)
	}
	var key uint64
	if v := outgoingMD(ctx, opts).Get(mapping.MDUIN); len(v) > 0 {
		key, _ = strconv.ParseUint(v[0], 10, 64)
	}
	i := 0
	if ep := p.guard.Pick(key); ep != nil {
		i = ep.Index()
	}
	for k := range len(p.direct) {
		if j := (i + k) % len(p.direct); p.direct[j].AnyReady() {
			i = j
			break
		}
	}
	ge := p.guard.Endpoints()[i]
	release := ge.Hold() // least_request sees the call
	start := time.Now()
	err := p.direct[i].Invoke(ctx, method, req, reply, opts...)
	release()
	ge.Record(resilience.ClassifyGRPC(ctx, err), time.Since(start))
	return err
}

// AtEndpoint is a call option of Invoke on the direct transport: when EP
// is set, the call goes to that endpoint of the pool's Guard, as
// resilience.WithEndpoint in the call's context says (without a context
// made per call). grpc-go's ClientConn ignores it: a call that may go to
// either transport uses resilience.WithEndpoint.
type AtEndpoint struct {
	grpc.EmptyCallOption
	EP *resilience.Endpoint
}

func atEndpoint(opts []grpc.CallOption) *resilience.Endpoint {
	for _, o := range opts {
		if o, ok := o.(*AtEndpoint); ok && o.EP != nil {
			return o.EP
		}
	}
	return nil
}

// outgoingMD is a direct call's request metadata: the OutgoingMD option's
// (grpcdirect sends it in place of the context's), else the context's.
func outgoingMD(ctx context.Context, opts []grpc.CallOption) metadata.MD {
	for _, o := range opts {
		if o, ok := o.(*grpcdirect.OutgoingMD); ok && o.MD != nil {
			return *o.MD
		}
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	return md
}

// DirectTransport reports whether the pool's unary calls go over the
// direct transport (grpcdirect), which reads the request metadata from a
// grpcdirect.OutgoingMD call option when one is given: a caller that
// gives one needs no outgoing metadata in the call's context.
func (p *Pool) DirectTransport() bool { return p.direct != nil }

// directReady: every connection index has a ready connection to some
// endpoint (as each grpc-go ClientConn is ready with one ready endpoint).
func (p *Pool) directReady() bool {
	for c := range p.cfg.Connections {
		ok := false
		for _, d := range p.direct {
			if d.Ready(c) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return p.cfg.Connections > 0
}

// DirectCall is the state of a call started by StartPolicy: keep it in
// the request's own state (no allocation per call). One call at a time.
type DirectCall struct {
	p      *Pool
	a      resilience.Async
	ctx    context.Context
	method string
	dl     time.Time
	req    any
	reply  any
	opts   []grpc.CallOption
	done   func(error)

	mu  sync.Mutex
	tk  grpcdirect.Ticket // the attempt in flight, for Ticket
	gen uint64            // counts completions: a late ticket is not stored

	sendFn     resilience.Send
	finishInFn func(error, *connio.Batch)

	batch *connio.Batch // SetBatch: the starter's write batch
	rb    *connio.Batch // the completing reader's (ReplyBatch)
}

// SetBatch makes the next StartPolicy leave its request's write to batch
// b, the write batch of the caller's connection reader (connio.Batch),
// which the caller flushes. StartPolicy consumes it (the call may
// complete, and its owner be reused, before StartPolicy returns): set it
// before each call, never clear it after.
func (c *DirectCall) SetBatch(b *connio.Batch) { c.batch = b }

// ReplyBatch is, during StartPolicy's callback, the write batch of the
// direct connection's reader that completed the call (nil otherwise): the
// callback may leave the write of its answer to it.
func (c *DirectCall) ReplyBatch() *connio.Batch { return c.rb }

// Ticket names the call's attempt in flight over the direct transport
// (zero when none): Ticket().Cancel() completes it with Canceled if it is
// still pending; a stale ticket cancels nothing. An attempt that took the
// waiting path (see StartPolicy) is cancelled by its context instead.
func (c *DirectCall) Ticket() grpcdirect.Ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tk
}

// StartPolicy is Invoke through the Guard (resilience.Guard.Do with route
// policy pol, as a bridged call makes it) without waiting: the Guard's
// deadline check, admission, endpoint choice and accounting are Do's
// (resilience.Guard.Start), and the attempt is started on the chosen
// endpoint's direct connections (grpcdirect.Endpoint.Start). done runs
// once with the error Invoke would return (nil: reply holds the message;
// the grpc.Header and grpc.Trailer options are set), on the goroutine
// that completed the call, possibly before StartPolicy returns. ctx
// carries the outgoing metadata (unless a grpcdirect.OutgoingMD option
// gives it: then ctx needs none) and the cancellation the outcome is
// classified with (resilience.ClassifyGRPC); deadline (zero: none) is
// the call's, so ctx needs no timer.
//
// It returns resilience.ErrWouldWait with nothing done when the call
// needs the waiting path: not a direct upstream, a policy with retries
// or hedging, or a circuit breaker that would queue it. An attempt whose
// endpoint cannot take it without waiting (not connected yet, no free
// stream, a request larger than the send window) is made with Invoke's
// waiting path on a goroutine of its own (grpcdirect.Endpoint.Start).
func (p *Pool) StartPolicy(ctx context.Context, c *DirectCall, method string, key uint64, deadline time.Time, pol *resilience.Policy, req, reply any, done func(error), opts ...grpc.CallOption) error {
	if p.direct == nil || p.guard == nil {
		c.batch = nil
		return resilience.ErrWouldWait
	}
	if c.sendFn == nil {
		c.sendFn, c.finishInFn = c.send, c.finishIn
	}
	c.rb = nil
	c.p, c.ctx, c.method, c.dl, c.req, c.reply, c.opts, c.done = p, ctx, method, deadline, req, reply, opts, done
	_, sent, err := p.guard.Start(key, pol, deadline, &c.a, c.sendFn)
	if sent {
		return nil // c belongs to the completion now
	}
	if errors.Is(err, resilience.ErrWouldWait) {
		c.clear()
		return err
	}
	// Refused by the Guard, nothing sent: Do's error (a gRPC attempt is
	// never NotSent, so err is set).
	c.clear()
	done(resilience.Status(err))
	return nil
}

// send is the Guard's Send: the one attempt, on ep's direct endpoint
// (which makes a call it cannot write at once on its waiting path).
func (c *DirectCall) send(ep *resilience.Endpoint, _ int) bool {
	e := c.p.direct[ep.Index()]
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	b := c.batch
	c.batch = nil
	tk := e.StartIn(c.ctx, c.method, c.dl, c.req, c.reply, b, c.finishInFn, c.opts...)
	c.mu.Lock()
	if c.gen == gen { // not completed meanwhile
		c.tk = tk
	}
	c.mu.Unlock()
	return true
}

// finishIn is finish from the endpoint, with the completing reader's
// batch.
func (c *DirectCall) finishIn(err error, rb *connio.Batch) {
	c.rb = rb
	c.finish(err)
}

// finish ends the attempt: the Guard's outcome as Do records it, then
// the caller's callback.
func (c *DirectCall) finish(err error) {
	c.a.Finish(resilience.ClassifyGRPC(c.ctx, err))
	done := c.done
	c.clear()
	done(err)
}

func (c *DirectCall) clear() {
	c.mu.Lock()
	c.tk = grpcdirect.Ticket{}
	c.gen++
	c.mu.Unlock()
	c.p, c.ctx, c.req, c.reply, c.opts, c.done, c.batch = nil, nil, nil, nil, nil, nil, nil
}
