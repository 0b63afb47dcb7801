package resilience

import (
	"errors"
	"time"
)

// ErrWouldWait is returned by Guard.Start, with nothing done or counted,
// for a request it cannot run without waiting: its policy allows more
// than one attempt (retries, hedging) or the circuit breaker would queue
// it. Run it with Do.
var ErrWouldWait = errors.New("resilience: request needs the waiting path")

// Async is a request admitted by Guard.Start whose attempt is in flight.
// Keep it in the request's own state (no allocation); Finish ends it.
type Async struct {
	g     *Guard
	ep    *Endpoint
	start time.Duration
	held  bool // a retry budget slot (a retry of a request never sent)
}

// Send sends attempt n of a request to ep without waiting for the answer.
// It returns false when the request provably never left (NotSent: the
// next endpoint is tried, as Do does). When it returns true the attempt
// is in flight and its Finish must be called exactly once; Finish may run
// on another goroutine before Send returns.
type Send func(ep *Endpoint, n int) (sent bool)

// Start runs a one-attempt request (no retries, no hedging) the way Do
// does, without waiting for the answer: the deadline check (deadline zero:
// none), admission by the circuit breaker and adaptive limit (a request
// that would queue gets ErrWouldWait: run it with Do), the endpoint by
// adaptive weights under its in-flight cap, and Do's retries on another
// endpoint of a request that was never sent (up to 3 attempts, under the
// retry budget). Every counter, the endpoint's in-flight count, latency
// and outcome (recorded by a.Finish) are Do's.
//
// It returns the number of the last attempt and whether it is in flight
// (then a.Finish must be called, and Start has not touched a since send
// returned), or, with nothing sent, an error as Do's (ErrDeadline,
// ErrNoEndpoint, a *Rejected) or ErrWouldWait; sent false with a nil
// error means every attempt was NotSent (send's last error stands).
func (g *Guard) Start(key uint64, p *Policy, deadline time.Time, a *Async, send Send) (n int, sent bool, err error) {
	if p.MaxAttempts > 1 || p.HedgeDelay > 0 {
		return -1, false, ErrWouldWait
	}
	hasDL := !deadline.IsZero()
	var until time.Time
	if hasDL {
		until = deadline.Add(-g.minRemaining)
		if !time.Now().Before(until) {
			g.c.Expired(StageAdmission)
			return -1, false, ErrDeadline
		}
	}
	if err := g.gate.tryAcquire(p.Core); err != nil {
		if r, ok := err.(*Rejected); ok {
			g.c.Rejected(r)
		}
		return -1, false, err
	}
	g.live.Add(1)
	var tried Tried
	held := false
	for n = 0; ; n++ {
		ep, err := g.pick(key, tried)
		if err != nil {
			if held {
				g.budget.Release()
			}
			g.done()
			if n == 0 {
				if r, ok := err.(*Rejected); ok {
					g.c.Rejected(r)
				}
				return -1, false, err
			}
			g.c.Retry(RetryNoEndpoint)
			return n - 1, false, nil
		}
		tried = tried.With(ep.index)
		ep.inflight.Add(1)
		start := g.s.clock()
		*a = Async{g: g, ep: ep, start: start, held: held}
		if send(ep, n) {
			return n, true, nil
		}
		*a = Async{}
		g.end(ep, start, NotSent)
		if held {
			g.budget.Release()
			held = false
		}
		now := time.Now()
		if n+1 >= max(p.MaxAttempts, notSentAttempts) || (hasDL && !now.Before(deadline)) {
			g.done()
			return n, false, nil
		}
		if hasDL && !now.Before(until) {
			g.c.Retry(RetryDeadline)
			g.done()
			return n, false, nil
		}
		if !g.budget.TryAcquire(g.live.Load()) {
			g.c.Retry(RetryBudgetExhausted)
			g.done()
			return n, false, nil
		}
		held = true
		g.c.Retry(RetrySent)
	}
}

// Finish ends the attempt Start left in flight with outcome o: the
// endpoint's in-flight count, latency and health, the adaptive limit, and
// the request's admission, as Do records them.
func (a *Async) Finish(o Outcome) {
	g, ep, start, held := a.g, a.ep, a.start, a.held
	*a = Async{}
	g.end(ep, start, o)
	if held {
		g.budget.Release()
	}
	g.done()
}

// tryAcquire admits one request if it fits now; a request that would
// have to queue gets ErrWouldWait, one that acquire would refuse at once
// the same *Rejected.
func (g *gate) tryAcquire(core bool) error {
	g.mu.Lock()
	ok, limited := g.admitLocked(core)
	g.mu.Unlock()
	switch {
	case ok:
		return nil
	case g.maxWait > 0:
		return ErrWouldWait
	}
	return refusal(limited)
}
