package resilience

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
)

// Policy is one route's resilience policy, resolved once from config.
type Policy struct {
	Idempotent  bool
	Core        bool
	RetryOn     RetryOn
	MaxAttempts int           // counts the first try; 1 = no retry
	HedgeDelay  time.Duration // 0 = no hedging
}

// PolicyFor resolves a route's config (after defaults).
func PolicyFor(r config.RouteResilience) Policy {
	p := Policy{Idempotent: r.Idempotent, Core: r.Core, MaxAttempts: max(r.MaxAttempts, 1), HedgeDelay: r.HedgeDelay}
	for _, o := range r.RetryOn {
		switch o {
		case config.RetryOnConnectFailure:
			p.RetryOn |= RetryConnectFailure
		case config.RetryOnUnavailable:
			p.RetryOn |= RetryUnavailable
		case config.RetryOnResourceExhausted:
			p.RetryOn |= RetryResourceExhausted
		}
	}
	if !p.Idempotent {
		p.MaxAttempts, p.HedgeDelay = 1, 0
	}
	return p
}

// Attempt sends a request's attempt number n to ep and classifies how it
// ended. It must return promptly once ctx is done. With hedging, two
// attempts of one request may run at once (different n, different ep).
type Attempt func(ctx context.Context, ep *Endpoint, n int) Outcome

// Guard is one upstream's resilience: its endpoints' health, a balancer
// over them, admission (deadline, circuit breaker, adaptive limit) and
// retries under a budget. Build one per upstream per config generation.
type Guard struct {
	name         string
	s            *set
	bal          Balancer
	gate         gate
	lim          *Limiter
	budget       *Budget
	minRemaining time.Duration
	epCap        int64
	live         atomic.Int64
	c            *counters
}

// Option adjusts a Guard.
type Option func(*Guard)

// WithClock sets the clock (tests).
func WithClock(c Clock) Option { return func(g *Guard) { g.s.clock = c } }

// WithObserver forwards events to o (e.g. Metrics.For).
func WithObserver(o Observer) Option { return func(g *Guard) { g.c.next = o } }

// WithLogger sets the logger for ejection events (Info, at most one line
// per second per upstream).
func WithLogger(l *slog.Logger) Option { return func(g *Guard) { g.c.log = l } }

// New builds the Guard of upstream name with the given balancer (lb:
// round_robin, least_request or consistent_hash) over addrs. Zero fields
// of rc get their defaults.
func New(name, lb string, addrs []string, rc config.Resilience, opts ...Option) *Guard {
	rc.ApplyDefaults() // zero fields (a config built by hand) get the defaults
	g := &Guard{name: name, c: &counters{name: name, log: slog.Default()}}
	w, o := rc.AdaptiveWeights, rc.OutlierDetection
	g.s = &set{
		name: name, clock: MonoClock(), obs: g.c,
		weights: !w.Disabled, decay: float64(max(w.Decay, time.Millisecond)), ramp: w.SlowStart,
		minShare: max(w.MinWeightPercent, 0.01) / 100,
		outlier:  !o.Disabled, consecutive: max(o.ConsecutiveFailures, 1), ratePct: o.FailureRatePercent,
		rateMin: max(o.FailureRateMinRequests, 1), interval: o.Interval, baseEject: o.BaseEjectionTime,
		maxEject: max(o.MaxEjectionTime, o.BaseEjectionTime), maxEjectPct: o.MaxEjectionPercent,
	}
	for _, opt := range opts {
		opt(g)
	}
	for i, a := range addrs {
		g.s.eps = append(g.s.eps, newEndpoint(g.s, i, a))
	}
	g.bal = newBalancer(lb, g.s)
	cb := rc.CircuitBreaker
	g.gate = gate{maxRequests: max(cb.MaxRequests, 1), maxPending: cb.MaxPending, maxWait: cb.MaxWait}
	if a := rc.AdaptiveConcurrency; a.Enabled {
		g.lim = NewLimiter(a.MinLimit, a.MaxLimit, a.InitialLimit, a.Tolerance, a.Window, a.LongWindow)
		g.lim.onChange = g.c.LimitChanged
		g.gate.lim = g.lim
		g.c.limit.Store(int64(a.InitialLimit))
	}
	g.budget = NewBudget(rc.RetryBudget.BudgetPercent, rc.RetryBudget.MinConcurrency)
	g.minRemaining = rc.MinRemaining
	g.epCap = int64(cb.MaxEndpointRequests)
	return g
}

// Name is the upstream's name.
func (g *Guard) Name() string { return g.name }

// Endpoints returns the upstream's endpoints, in config order.
func (g *Guard) Endpoints() []*Endpoint { return g.s.eps }

// Weights appends every endpoint's effective weight (best = 1, 0 when
// unavailable) to dst.
func (g *Guard) Weights(dst []float64) []float64 { return g.s.Weights(dst) }

// Stats returns the Guard's counters.
func (g *Guard) Stats() Stats {
	s := g.c.stats()
	s.RetriesInFlight = g.budget.Active()
	return s
}

// Pick returns the endpoint a request with this key would go to, without
// sending anything (e.g. to report a user's endpoint).
func (g *Guard) Pick(key uint64) *Endpoint { return g.bal.Pick(key, 0) }

// Do admits a request and runs its attempts. It returns the number of the
// attempt whose answer stands (the caller relays that attempt's reply), or
// an error when nothing was sent: ErrDeadline, ErrNoEndpoint or a
// *Rejected. Do does not allocate unless it queues or hedges.
func (g *Guard) Do(ctx context.Context, key uint64, p *Policy, call Attempt) (int, error) {
	dl, hasDL := ctx.Deadline()
	return g.do(ctx, key, p, call, dl, hasDL, false)
}

// DoUntil is Do for a request whose deadline is the value deadline (zero:
// none; ctx's, if ctx has an earlier one): ctx needs no timer of its own,
// and its cancellation still ends the wait in the queue and the retries.
// The attempts get ctx as it is: each enforces the deadline itself (a
// transport that takes it as a value, such as grpcdirect's Start). The
// deadline ends the retries as an expired ctx ends Do's. A hedged policy
// runs Do on a context with the deadline: hedging makes a context per
// attempt anyway.
func (g *Guard) DoUntil(ctx context.Context, deadline time.Time, key uint64, p *Policy, call Attempt) (int, error) {
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if p.Idempotent && p.HedgeDelay > 0 && p.MaxAttempts > 1 && !deadline.IsZero() {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return g.Do(dctx, key, p, call)
	}
	return g.do(ctx, key, p, call, deadline, !deadline.IsZero(), true)
}

// do is Do with the request's deadline dl (hasDL: set); byValue: ctx does
// not carry it, so its passing is checked where Do checks ctx.Err().
func (g *Guard) do(ctx context.Context, key uint64, p *Policy, call Attempt, dl time.Time, hasDL, byValue bool) (int, error) {
	var until time.Time
	if hasDL {
		until = dl.Add(-g.minRemaining)
		if !time.Now().Before(until) {
			g.c.Expired(StageAdmission)
			return -1, ErrDeadline
		}
	}
	if err := g.gate.acquire(ctx, p.Core, until); err != nil {
		if err == ErrDeadline {
			g.c.Expired(StageQueue)
		} else if r, ok := err.(*Rejected); ok {
			g.c.Rejected(r)
		}
		return -1, err
	}
	g.live.Add(1)
	defer g.done()
	// A request whose deadline passed while it queued is never sent.
	if hasDL && !time.Now().Before(until) {
		g.c.Expired(StageQueue)
		return -1, ErrDeadline
	}
	if p.Idempotent && p.HedgeDelay > 0 && p.MaxAttempts > 1 {
		return g.hedged(ctx, key, p, call, hasDL, until)
	}
	var tried Tried
	held := false
	defer func() {
		if held {
			g.budget.Release()
		}
	}()
	for n := 0; ; n++ {
		ep, err := g.pick(key, tried)
		if err != nil {
			if n == 0 {
				if r, ok := err.(*Rejected); ok {
					g.c.Rejected(r)
				}
				return -1, err
			}
			g.c.Retry(RetryNoEndpoint)
			return n - 1, nil
		}
		tried = tried.With(ep.index)
		o := g.attempt(ctx, ep, n, call)
		if held {
			g.budget.Release()
			held = false
		}
		ended := ctx.Err() != nil || byValue && hasDL && !time.Now().Before(dl)
		if o == NotSent {
			if n+1 >= max(p.MaxAttempts, notSentAttempts) || ended {
				return n, nil
			}
		} else if n+1 >= p.MaxAttempts || p.RetryOn&o.bit() == 0 || ended {
			return n, nil
		}
		if hasDL && !time.Now().Before(until) {
			g.c.Retry(RetryDeadline)
			return n, nil
		}
		if !g.budget.TryAcquire(g.live.Load()) {
			g.c.Retry(RetryBudgetExhausted)
			return n, nil
		}
		held = true
		g.c.Retry(RetrySent)
	}
}

func (g *Guard) done() {
	g.live.Add(-1)
	g.gate.release()
}

// pick chooses an untried available endpoint under its in-flight cap.
func (g *Guard) pick(key uint64, tried Tried) (*Endpoint, error) {
	capped := false
	for range len(g.s.eps) {
		ep := g.bal.Pick(key, tried)
		if ep == nil {
			break
		}
		if g.epCap <= 0 || ep.inflight.Load() < g.epCap {
			return ep, nil
		}
		capped = true
		tried = tried.With(ep.index)
	}
	if capped {
		return nil, ErrEndpointLimit
	}
	return nil, ErrNoEndpoint
}

// attempt runs one attempt and records its outcome and latency.
func (g *Guard) attempt(ctx context.Context, ep *Endpoint, n int, call Attempt) Outcome {
	ep.inflight.Add(1)
	start := g.s.clock()
	o := call(ctx, ep, n)
	g.end(ep, start, o)
	return o
}

// end records the outcome and latency of an attempt on ep that began at
// start (the clock's reading when ep's in-flight count was raised).
func (g *Guard) end(ep *Endpoint, start time.Duration, o Outcome) {
	now := g.s.clock()
	ep.inflight.Add(-1)
	rtt := now - start
	ep.record(o, rtt, now)
	if g.lim != nil && o != Cancelled && o != ConnectFailure && o != NotSent {
		g.lim.Record(now, rtt, o == Timeout || o == Exhausted, g.live.Load())
	}
}

// notSentAttempts bounds the attempts of a request that was never sent.
const notSentAttempts = 3

type hedgeResult struct {
	n int
	o Outcome
}

// hedged runs attempt 0, and another attempt on another endpoint each
// HedgeDelay without an answer (or at once after a retryable failure),
// up to MaxAttempts under the retry budget. The first answer that is not
// a retryable failure wins; the others are cancelled and awaited.
func (g *Guard) hedged(ctx context.Context, key uint64, p *Policy, call Attempt, hasDL bool, until time.Time) (int, error) {
	ch := make(chan hedgeResult, p.MaxAttempts)
	var cancels [8]context.CancelFunc
	var tried Tried
	launched, finished, held := 0, 0, 0
	defer func() {
		for range held {
			g.budget.Release()
		}
	}()
	launch := func() error {
		ep, err := g.pick(key, tried)
		if err != nil {
			return err
		}
		tried = tried.With(ep.index)
		actx, cancel := context.WithCancel(ctx)
		cancels[launched] = cancel
		n := launched
		launched++
		go func() { ch <- hedgeResult{n, g.attempt(actx, ep, n, call)} }()
		return nil
	}
	// more reports whether another attempt may go out, taking budget.
	more := func(ev RetryEvent) bool {
		if launched >= min(p.MaxAttempts, len(cancels)) {
			return false
		}
		if hasDL && !time.Now().Before(until) {
			g.c.Retry(RetryDeadline)
			return false
		}
		if !g.budget.TryAcquire(g.live.Load()) {
			g.c.Retry(RetryBudgetExhausted)
			return false
		}
		held++
		if launch() != nil {
			g.c.Retry(RetryNoEndpoint)
			return false
		}
		g.c.Retry(ev)
		return true
	}
	if err := launch(); err != nil {
		if r, ok := err.(*Rejected); ok {
			g.c.Rejected(r)
		}
		return -1, err
	}
	t := time.NewTimer(p.HedgeDelay)
	defer t.Stop()
	winner, last := -1, 0
	for winner < 0 && finished < launched {
		select {
		case r := <-ch:
			finished++
			last = r.n
			if (p.RetryOn&r.o.bit() == 0 && r.o != NotSent) || ctx.Err() != nil {
				winner = r.n
			} else if finished == launched {
				more(RetrySent)
			}
		case <-t.C:
			if more(HedgeSent) {
				t.Reset(p.HedgeDelay)
			}
		}
	}
	for i := range launched {
		if i != winner {
			cancels[i]()
		}
	}
	for ; finished < launched; finished++ {
		<-ch
	}
	for i := range launched {
		cancels[i]()
	}
	if winner < 0 {
		winner = last
	}
	return winner, nil
}
