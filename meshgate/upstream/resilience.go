package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// WithResilience passes options (observer, logger) to the pool's Guard.
func WithResilience(opts ...resilience.Option) Option {
	return func(o *poolOptions) { o.resilience = append(o.resilience, opts...) }
}

// Guard is the pool's resilience Guard: it picks the endpoint of every
// request (adaptive weights, outlier ejection, the configured lb) and
// applies admission, breakers and retries (package resilience).
func (p *PrivatePool) Guard() *resilience.Guard { return p.guard }

// newGuard builds the pool's Guard over its endpoints; an endpoint is down
// (never picked) until it has a live connection.
func (p *PrivatePool) newGuard(lb string, addrs []string, rc config.Resilience, opts []resilience.Option) {
	p.guard = resilience.New(p.name, lb, addrs, rc, opts...)
	for i, ge := range p.guard.Endpoints() {
		ge.SetDown(true)
		p.eps[i].res = ge
	}
}

// onePolicy is the policy of calls that name none (Do): one attempt,
// plus the retries of requests that were never sent.
var onePolicy = resilience.Policy{MaxAttempts: 1}

// DoPolicy sends req by route policy pol through the Guard: deadline
// check, circuit breaker and adaptive limit, the endpoint by adaptive
// weights, retries on another endpoint (idempotent routes, and requests
// never sent on any route) under the retry budget, and hedging
// (idempotent routes with hedge_delay: each attempt sends its own shallow
// copy of req, since privconn assigns the copy's seq).
func (p *PrivatePool) DoPolicy(ctx context.Context, req *codec.Frame, pol *resilience.Policy) (*codec.Frame, error) {
	return p.doPolicy(ctx, time.Time{}, req, pol)
}

// DoPolicyUntil is DoPolicy for a request whose deadline is the value
// deadline (not zero; ctx's if earlier) rather than ctx's: ctx needs no
// timer of its own (resilience.Guard.DoUntil), and each attempt is a
// privconn Start with the deadline (the connection's one timer enforces
// it), waited for here; ctx's end cancels it. Hedged policies run their
// attempts with a context carrying the deadline, as DoPolicy does.
func (p *PrivatePool) DoPolicyUntil(ctx context.Context, deadline time.Time, req *codec.Frame, pol *resilience.Policy) (*codec.Frame, error) {
	return p.doPolicy(ctx, deadline, req, pol)
}

func (p *PrivatePool) doPolicy(ctx context.Context, dl time.Time, req *codec.Frame, pol *resilience.Policy) (*codec.Frame, error) {
	if p.ctx.Err() != nil {
		return nil, ErrPoolClosed
	}
	pc := policyCalls.Get().(*policyCall)
	pc.p, pc.req, pc.pol, pc.dl = p, req, pol, dl
	var n int
	var err error
	if dl.IsZero() {
		n, err = p.guard.Do(ctx, req.UIN, pol, pc.fn)
	} else {
		n, err = p.guard.DoUntil(ctx, dl, req.UIN, pol, pc.fn)
	}
	var resp *codec.Frame
	var last error
	var lastEp *Endpoint
	if err == nil {
		resp, last, lastEp = pc.resps[n], pc.errs[n], pc.eps[n]
	}
	pc.release() // every attempt has returned (Do waits for hedged ones)
	switch {
	case err == nil && last == nil:
		return resp, nil
	case err != nil:
		return nil, p.refused(err)
	case errors.Is(last, privconn.ErrTooManyInFlight), errors.Is(last, ErrNoHealthy), errors.Is(last, privconn.ErrNotSent):
		return nil, p.notSent(last)
	}
	return nil, p.wrap(lastEp, last)
}

// policyCall is the state of one DoPolicy call, pooled with its attempt
// function bound once: a closure over per-call arrays escaped to the
// heap (four allocations per call).
type policyCall struct {
	p     *PrivatePool
	req   *codec.Frame
	pol   *resilience.Policy
	resps [8]*codec.Frame
	errs  [8]error
	eps   [8]*Endpoint
	fn    resilience.Attempt // attempt
	// DoPolicyUntil: the deadline, and the Start an attempt waits for
	// (startWait; its completion, startDone bound once)
	dl     time.Time
	h      privconn.Handle
	ch     chan struct{}
	doneFn func(*codec.Frame, error)
	resp   *codec.Frame
	err    error
}

var policyCalls = sync.Pool{New: func() any {
	pc := &policyCall{ch: make(chan struct{}, 1)}
	pc.fn, pc.doneFn = pc.attempt, pc.startDone
	return pc
}}

// startWait is cn.Do(ctx, f) with the deadline pc.dl as a value: a Start
// waited for; ctx's end cancels it (privconn.ErrCanceled, which wraps
// context.Canceled as Do's ctx.Err() would be).
func (pc *policyCall) startWait(ctx context.Context, cn *privconn.Conn, f *codec.Frame) (*codec.Frame, error) {
	if err := cn.StartHandle(f, pc.dl, &pc.h, pc.doneFn); err != nil {
		return nil, err
	}
	select {
	case <-pc.ch:
	case <-ctx.Done():
		pc.h.Ticket().Cancel() // a completion that won the race has sent already
		<-pc.ch
	}
	r, err := pc.resp, pc.err
	pc.resp, pc.err = nil, nil
	return r, err
}

// startDone is the completion of startWait's Start. A reply aliases the
// connection reader's buffer: it is copied, as Do's reply is.
func (pc *policyCall) startDone(resp *codec.Frame, err error) {
	if resp != nil {
		resp = privconn.Clone(resp)
	}
	pc.resp, pc.err = resp, err
	pc.ch <- struct{}{}
}

func (pc *policyCall) release() {
	pc.p, pc.req, pc.pol, pc.dl = nil, nil, nil, time.Time{}
	clear(pc.resps[:])
	clear(pc.errs[:])
	clear(pc.eps[:])
	policyCalls.Put(pc)
}

// attempt is one try of a DoPolicy call on the Guard's endpoint ge.
func (pc *policyCall) attempt(ctx context.Context, ge *resilience.Endpoint, n int) resilience.Outcome {
	p, req, pol := pc.p, pc.req, pc.pol
	e := p.eps[ge.Index()]
	pc.eps[n] = e
	cn, ok := e.conn()
	if !ok {
		pc.errs[n] = fmt.Errorf("%w: %s: endpoint %s has no live connection", ErrNoHealthy, p.name, e.addr)
		return resilience.NotSent
	}
	f := req
	if pol.HedgeDelay > 0 {
		cp := *req // attempts may run side by side: each its own seq; req stays read-only
		f = &cp
	}
	reportEndpoint(ctx, e.addr)
	e.begin()
	var r *codec.Frame
	var err error
	hedged := pol.Idempotent && pol.HedgeDelay > 0 && pol.MaxAttempts > 1 // as the Guard decides
	// Hedged attempts run side by side: DoUntil gave them a context with
	// the deadline.
	if !pc.dl.IsZero() && !hedged {
		r, err = pc.startWait(ctx, cn, f)
	} else {
		r, err = cn.Do(ctx, f)
	}
	e.end(err)
	pc.errs[n] = err
	switch {
	case err == nil:
		e.count(resultCode(r.Result))
		pc.resps[n] = r
		return resilience.ClassifyResult(r.Result)
	case errors.Is(err, privconn.ErrNotSent), errors.Is(err, privconn.ErrTooManyInFlight):
		return resilience.NotSent
	}
	e.count(status.Code(Status(ctx, err)))
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return resilience.Timeout
	case errors.Is(err, context.Canceled):
		return resilience.Cancelled
	}
	return resilience.ConnectFailure
}
