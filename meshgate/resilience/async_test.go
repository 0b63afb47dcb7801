package resilience

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
)

// Start accounts a request like Do: in flight on its endpoint until
// Finish, admission held and released, a never-sent attempt retried on
// another endpoint, and the same counters for every outcome.
func TestStartAccountsLikeDo(t *testing.T) {
	rc := defaults()
	rc.CircuitBreaker.MaxRequests = 1
	g := New("u", LBRoundRobin, addrs(2), rc)
	one := pol(config.RouteResilience{})
	var a Async
	var seen []int
	n, sent, err := g.Start(0, one, time.Now().Add(time.Second), &a, func(ep *Endpoint, n int) bool {
		seen = append(seen, ep.index)
		return n == 1 // the first endpoint had no connection
	})
	if err != nil || !sent || n != 1 || len(seen) != 2 || seen[0] == seen[1] {
		t.Fatalf("Start = %d, %v, %v over %v; want attempt 1 in flight on the other endpoint", n, sent, err, seen)
	}
	if got := g.Stats().Retries["retry"]; got != 1 {
		t.Fatalf("never-sent retries counted %d, want 1", got)
	}
	ep := g.Endpoints()[seen[1]]
	if ep.InFlight() != 1 || g.gate.inFlight() != 1 {
		t.Fatalf("in flight: endpoint %d, admitted %d; want 1 and 1", ep.InFlight(), g.gate.inFlight())
	}
	// max_requests 1 without a queue: a second request is refused as Do refuses it.
	var b Async
	if _, _, err := g.Start(0, one, time.Time{}, &b, func(*Endpoint, int) bool { t.Fatal("sent past max_requests"); return true }); !errors.Is(err, ErrMaxRequests) {
		t.Fatalf("second Start: %v, want ErrMaxRequests", err)
	}
	if _, err := g.Do(context.Background(), 0, one, func(context.Context, *Endpoint, int) Outcome { return Success }); !errors.Is(err, ErrMaxRequests) {
		t.Fatalf("Do beside it: %v, want ErrMaxRequests", err)
	}
	if got := g.Stats().Rejected["max_requests"]; got != 2 {
		t.Fatalf("rejections counted %d, want 2", got)
	}
	a.Finish(Success)
	if ep.InFlight() != 0 || g.gate.inFlight() != 0 || ep.Latency() <= 0 {
		t.Fatalf("after Finish: endpoint in flight %d, admitted %d, latency %v", ep.InFlight(), g.gate.inFlight(), ep.Latency())
	}
	if g.budget.Active() != 0 {
		t.Fatalf("retry budget still held: %d", g.budget.Active())
	}
}

// Start leaves to Do what it cannot do without waiting, touching nothing;
// a passed deadline and an upstream without endpoints fail as in Do.
func TestStartDefersAndRefuses(t *testing.T) {
	rc := defaults()
	rc.CircuitBreaker.MaxRequests = 1
	rc.CircuitBreaker.MaxWait = time.Second
	rc.CircuitBreaker.MaxPending = 4
	g := New("u", LBRoundRobin, addrs(2), rc)
	never := func(*Endpoint, int) bool { t.Fatal("sent"); return true }
	var a Async
	if _, _, err := g.Start(0, pol(idem), time.Time{}, &a, never); !errors.Is(err, ErrWouldWait) {
		t.Fatalf("retrying policy: %v, want ErrWouldWait", err)
	}
	if _, _, err := g.Start(0, pol(config.RouteResilience{}), time.Now().Add(-time.Millisecond), &a, never); !errors.Is(err, ErrDeadline) {
		t.Fatalf("passed deadline: %v, want ErrDeadline", err)
	}
	if got := g.Stats().Expired["admission"]; got != 1 {
		t.Fatalf("expired counted %d, want 1", got)
	}
	// The breaker would queue the second request: Start defers to Do.
	if _, sent, err := g.Start(0, pol(config.RouteResilience{}), time.Time{}, &a, func(*Endpoint, int) bool { return true }); !sent || err != nil {
		t.Fatalf("first: %v %v", sent, err)
	}
	var b Async
	if _, _, err := g.Start(0, pol(config.RouteResilience{}), time.Time{}, &b, never); !errors.Is(err, ErrWouldWait) {
		t.Fatalf("would queue: %v, want ErrWouldWait", err)
	}
	a.Finish(Success)
	for _, ep := range g.Endpoints() {
		ep.SetDown(true)
	}
	if _, _, err := g.Start(0, pol(config.RouteResilience{}), time.Time{}, &a, never); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("all down: %v, want ErrNoEndpoint", err)
	}
	if g.gate.inFlight() != 0 {
		t.Fatalf("admission leaked: %d", g.gate.inFlight())
	}
}
