package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
	if p.ctx.Err() != nil {
		return nil, ErrPoolClosed
	}
	pc := policyCalls.Get().(*policyCall)
	pc.p, pc.req, pc.pol = p, req, pol
	n, err := p.guard.Do(ctx, req.UIN, pol, pc.fn)
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
}

var policyCalls = sync.Pool{New: func() any {
	pc := new(policyCall)
	pc.fn = pc.attempt
	return pc
}}

func (pc *policyCall) release() {
	pc.p, pc.req, pc.pol = nil, nil, nil
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
	r, err := cn.Do(ctx, f)
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
