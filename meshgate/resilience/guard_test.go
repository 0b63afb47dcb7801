package resilience

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
)

var idem = config.RouteResilience{Idempotent: true, RetryOn: []string{config.RetryOnConnectFailure, config.RetryOnUnavailable}, MaxAttempts: 3}

// A retryable failure is retried on a different endpoint, only on
// idempotent routes and only for the configured outcomes.
func TestRetryDifferentEndpoint(t *testing.T) {
	g := New("u", LBRoundRobin, addrs(3), defaults())
	var seen []int
	call := func(_ context.Context, ep *Endpoint, n int) Outcome {
		seen = append(seen, ep.index)
		if n < 2 {
			return Unavailable
		}
		return Success
	}
	n, err := g.Do(context.Background(), 0, pol(idem), call)
	if err != nil || n != 2 {
		t.Fatalf("Do = %d, %v; want attempt 2 to stand", n, err)
	}
	if len(seen) != 3 || seen[0] == seen[1] || seen[1] == seen[2] || seen[0] == seen[2] {
		t.Fatalf("attempts went to %v, want three different endpoints", seen)
	}
	if got := g.Stats().Retries["retry"]; got != 2 {
		t.Fatalf("retries counted %d, want 2", got)
	}

	for _, c := range []struct {
		name string
		r    config.RouteResilience
		o    Outcome
	}{
		{"not idempotent", config.RouteResilience{MaxAttempts: 3, RetryOn: idem.RetryOn}, Unavailable},
		{"not retryable outcome", idem, Timeout},
		{"exhausted not listed", idem, Exhausted},
	} {
		seen = seen[:0]
		n, err := g.Do(context.Background(), 0, pol(c.r), func(_ context.Context, ep *Endpoint, _ int) Outcome {
			seen = append(seen, ep.index)
			return c.o
		})
		if err != nil || n != 0 || len(seen) != 1 {
			t.Fatalf("%s: Do = %d, %v after %d attempts; want exactly one", c.name, n, err, len(seen))
		}
	}
}

// No retry once the remaining deadline is below min_remaining. The
// margins are wide (the attempt leaves 40ms, half of min_remaining) so a
// loaded machine oversleeping does not run the deadline out altogether.
func TestRetryNotAfterDeadline(t *testing.T) {
	rc := defaults()
	rc.MinRemaining = 80 * time.Millisecond
	g := New("u", LBRoundRobin, addrs(3), rc)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	attempts := 0
	n, err := g.Do(ctx, 0, pol(idem), func(ctx context.Context, _ *Endpoint, _ int) Outcome {
		attempts++
		dl, _ := ctx.Deadline()
		time.Sleep(time.Until(dl) - 40*time.Millisecond) // the backend is slow: leaves 40ms < min_remaining
		return Unavailable
	})
	if err != nil || n != 0 || attempts != 1 {
		t.Fatalf("Do = %d, %v after %d attempts; want one attempt and no retry", n, err, attempts)
	}
	if got := g.Stats().Retries["deadline"]; got != 1 {
		t.Fatalf("deadline-denied retries = %d, want 1", got)
	}
}

// DoUntil with the deadline as a value, on a context without one: the
// same admission, retry and deadline decisions as Do on a context with
// that deadline, and no timer in the attempts' context.
func TestDoUntilDeadlineAsValue(t *testing.T) {
	rc := defaults()
	rc.MinRemaining = 80 * time.Millisecond
	rc.OutlierDetection.Disabled = true
	g := New("u", LBRoundRobin, addrs(3), rc)
	// Retries go out while the deadline allows.
	attempts := 0
	n, err := g.DoUntil(context.Background(), time.Now().Add(5*time.Second), 0, pol(idem), func(ctx context.Context, _ *Endpoint, _ int) Outcome {
		if _, ok := ctx.Deadline(); ok {
			t.Error("the attempt's context has a deadline")
		}
		attempts++
		return Unavailable
	})
	if err != nil || n != 2 || attempts != 3 {
		t.Fatalf("DoUntil = %d, %v after %d attempts; want 3 attempts", n, err, attempts)
	}
	// No retry once the remaining time is below min_remaining.
	dl := time.Now().Add(200 * time.Millisecond)
	attempts = 0
	n, err = g.DoUntil(context.Background(), dl, 0, pol(idem), func(context.Context, *Endpoint, int) Outcome {
		attempts++
		time.Sleep(time.Until(dl) - 40*time.Millisecond) // the backend is slow: leaves 40ms < min_remaining
		return Unavailable
	})
	if err != nil || n != 0 || attempts != 1 {
		t.Fatalf("DoUntil = %d, %v after %d attempts; want one attempt and no retry", n, err, attempts)
	}
	if got := g.Stats().Retries["deadline"]; got != 1 {
		t.Fatalf("deadline-denied retries = %d, want 1", got)
	}
	// A deadline already past: nothing sent.
	if _, err := g.DoUntil(context.Background(), time.Now().Add(-time.Millisecond), 0, pol(idem), func(context.Context, *Endpoint, int) Outcome {
		t.Fatal("sent")
		return Success
	}); err != ErrDeadline {
		t.Fatalf("expired: %v, want ErrDeadline", err)
	}
	// A context's earlier deadline wins.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	if _, err := g.DoUntil(ctx, time.Now().Add(time.Hour), 0, pol(idem), func(context.Context, *Endpoint, int) Outcome {
		t.Fatal("sent")
		return Success
	}); err != ErrDeadline {
		t.Fatalf("context expired: %v, want ErrDeadline", err)
	}
}

// A flapping upstream: concurrent requests all fail; retries in flight
// never exceed the budget (20 % of live requests, minimum 2) and denied
// retries are counted.
func TestRetryBudget(t *testing.T) {
	rc := defaults()
	rc.OutlierDetection.Disabled = true
	rc.RetryBudget = config.RetryBudget{BudgetPercent: 20, MinConcurrency: 2}
	g := New("u", LBRoundRobin, addrs(3), rc)
	const clients = 30
	var inRetry, maxRetry, live, violations atomic.Int64
	release, release2 := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			live.Add(1)
			defer live.Add(-1)
			_, _ = g.Do(context.Background(), 0, pol(idem), func(_ context.Context, _ *Endpoint, n int) Outcome {
				if n > 0 {
					r := inRetry.Add(1)
					defer inRetry.Add(-1)
					for m := maxRetry.Load(); r > m && !maxRetry.CompareAndSwap(m, r); m = maxRetry.Load() {
					}
					if r > max(2, clients*20/100) {
						violations.Add(1)
					}
					<-release2
				}
				<-release
				return Unavailable
			})
		}()
	}
	// Let every first attempt fail at once, then the retries.
	deadline := time.Now().Add(5 * time.Second)
	for g.live.Load() < clients && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	// Every request now wants a retry: wait until each got one or was
	// denied, then let the retries fail too.
	for time.Now().Before(deadline) {
		st := g.Stats()
		if st.RetriesInFlight+st.Retries["budget_exhausted"] >= clients {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release2)
	wg.Wait()
	st := g.Stats()
	if violations.Load() != 0 || maxRetry.Load() > 6 {
		t.Fatalf("retries in flight peaked at %d, budget allows 6", maxRetry.Load())
	}
	if st.Retries["retry"] == 0 || st.Retries["budget_exhausted"] == 0 {
		t.Fatalf("retries %v: want some sent and some denied by the budget", st.Retries)
	}
	if st.RetriesInFlight != 0 {
		t.Fatalf("budget leaked %d slots", st.RetriesInFlight)
	}
}

// Hedging: the first attempt hangs, a hedge goes to another endpoint after
// the delay, its answer wins and the first is cancelled.
func TestHedge(t *testing.T) {
	g := New("u", LBRoundRobin, addrs(3), defaults())
	r := idem
	r.HedgeDelay = 5 * time.Millisecond
	var firstCancelled atomic.Bool
	eps := make([]int, 3)
	n, err := g.Do(context.Background(), 0, pol(r), func(ctx context.Context, ep *Endpoint, n int) Outcome {
		eps[n] = ep.index
		if n == 0 {
			<-ctx.Done()
			firstCancelled.Store(true)
			return Cancelled
		}
		return Success
	})
	if err != nil || n != 1 {
		t.Fatalf("Do = %d, %v; want the hedge (1) to win", n, err)
	}
	if !firstCancelled.Load() {
		t.Fatal("the losing attempt was not cancelled (or Do returned before it ended)")
	}
	if eps[0] == eps[1] {
		t.Fatalf("hedge went to the same endpoint %d", eps[0])
	}
	if got := g.Stats().Retries["hedge"]; got != 1 {
		t.Fatalf("hedges counted %d, want 1", got)
	}
}

// Circuit breaker: past max_requests a request fails fast with a reason;
// per-endpoint caps too.
func TestCircuitBreaker(t *testing.T) {
	rc := defaults()
	rc.CircuitBreaker.MaxRequests = 2
	g := New("u", LBRoundRobin, addrs(2), rc)
	hold := make(chan struct{})
	started := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = g.Do(context.Background(), 0, pol(config.RouteResilience{}), func(context.Context, *Endpoint, int) Outcome {
				started <- struct{}{}
				<-hold
				return Success
			})
		}()
	}
	<-started
	<-started
	t0 := time.Now()
	called := false
	_, err := g.Do(context.Background(), 0, pol(config.RouteResilience{}), func(context.Context, *Endpoint, int) Outcome {
		called = true
		return Success
	})
	if el := time.Since(t0); !errors.Is(err, ErrMaxRequests) || called || el > 100*time.Millisecond { // generous: the held calls never end on their own
		t.Fatalf("third request: err %v, called %v, after %s; want ErrMaxRequests at once", err, called, el)
	}
	close(hold)
	wg.Wait()
	if got := g.Stats().Rejected["max_requests"]; got != 1 {
		t.Fatalf("rejections counted %d, want 1", got)
	}

	rc = defaults()
	rc.CircuitBreaker.MaxEndpointRequests = 1
	g = New("u", LBRoundRobin, addrs(2), rc)
	for _, e := range g.s.eps {
		e.inflight.Store(1)
	}
	if _, err := g.Do(context.Background(), 0, pol(config.RouteResilience{}), func(context.Context, *Endpoint, int) Outcome { return Success }); !errors.Is(err, ErrEndpointLimit) {
		t.Fatalf("all endpoints at cap: err %v, want ErrEndpointLimit", err)
	}
}

// A request whose deadline passes while it waits for a slot is never sent;
// one that arrives expired (or with less than min_remaining) is never sent.
func TestDeadlineNeverSent(t *testing.T) {
	rc := defaults()
	rc.CircuitBreaker.MaxRequests = 1
	rc.CircuitBreaker.MaxWait = time.Second
	rc.MinRemaining = 5 * time.Millisecond
	g := New("u", LBRoundRobin, addrs(2), rc)
	hold := make(chan struct{})
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = g.Do(context.Background(), 0, pol(config.RouteResilience{Core: true}), func(context.Context, *Endpoint, int) Outcome {
			close(started)
			<-hold
			return Success
		})
	}()
	<-started
	var sent atomic.Int64
	call := func(context.Context, *Endpoint, int) Outcome { sent.Add(1); return Success }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	_, err := g.Do(ctx, 0, pol(config.RouteResilience{}), call)
	cancel()
	if !errors.Is(err, ErrDeadline) {
		t.Fatalf("queued past its deadline: err %v, want ErrDeadline", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Millisecond) // < min_remaining
	_, err = g.Do(ctx, 0, pol(config.RouteResilience{}), call)
	cancel()
	if !errors.Is(err, ErrDeadline) {
		t.Fatalf("arriving with 3ms left (min_remaining 5ms): err %v, want ErrDeadline", err)
	}
	close(hold)
	<-done
	if sent.Load() != 0 {
		t.Fatalf("%d expired requests were sent upstream", sent.Load())
	}
	st := g.Stats()
	if st.Expired["queue"] != 1 || st.Expired["admission"] != 1 {
		t.Fatalf("expired %v, want queue 1 and admission 1", st.Expired)
	}
}

// Core requests waiting for a slot are admitted before earlier non-core ones.
func TestGateCoreFirst(t *testing.T) {
	g := &gate{maxRequests: 1, maxPending: 10, maxWait: time.Second}
	if err := g.acquire(context.Background(), true, time.Time{}); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	var wg sync.WaitGroup
	wait := func(name string, core bool) {
		defer wg.Done()
		if err := g.acquire(context.Background(), core, time.Time{}); err != nil {
			t.Error(err)
			return
		}
		order <- name
		g.release()
	}
	wg.Add(1)
	go wait("normal", false)
	testkit.Await(2*time.Second, func() bool { return pendingOf(g) >= 1 })
	wg.Add(1)
	go wait("core", true)
	testkit.Await(2*time.Second, func() bool { return pendingOf(g) >= 2 })
	g.release()
	wg.Wait()
	if a, b := <-order, <-order; a != "core" || b != "normal" {
		t.Fatalf("admitted %s then %s, want core first", a, b)
	}
	// Full queue: max_pending.
	g = &gate{maxRequests: 1, maxPending: 0, maxWait: time.Second, active: 1}
	if err := g.acquire(context.Background(), false, time.Time{}); !errors.Is(err, ErrMaxPending) {
		t.Fatalf("err %v, want ErrMaxPending", err)
	}
}

// Listener-wide admission keeps a reserve for core routes.
func TestAdmissionCoreReserve(t *testing.T) {
	a := NewAdmission(&config.Overload{MaxInFlight: 10, CoreReservePercent: 20})
	for i := range 8 {
		if !a.Acquire(false) {
			t.Fatalf("non-core %d refused below 8", i)
		}
	}
	if a.Acquire(false) {
		t.Fatal("non-core admitted into the core reserve")
	}
	if !a.Acquire(true) || !a.Acquire(true) {
		t.Fatal("core refused within the cap")
	}
	if a.Acquire(true) {
		t.Fatal("core admitted past the cap")
	}
	if a.Shed() != 2 {
		t.Fatalf("shed %d, want 2", a.Shed())
	}
	var none *Admission
	if !none.Acquire(false) {
		t.Fatal("nil admission refused")
	}
}

func pendingOf(g *gate) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending
}

func TestStatusMapping(t *testing.T) {
	for _, c := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{ErrMaxRequests, codes.ResourceExhausted, "overloaded: max_requests"},
		{ErrSwitchedOff, codes.ResourceExhausted, "overloaded: switched_off"},
		{ErrDeadline, codes.DeadlineExceeded, "deadline exceeded before sending upstream"},
		{ErrNoEndpoint, codes.Unavailable, "no available endpoint"},
	} {
		st := status.Convert(Status(c.err))
		if st.Code() != c.code || st.Message() != c.msg {
			t.Errorf("Status(%v) = %s %q, want %s %q", c.err, st.Code(), st.Message(), c.code, c.msg)
		}
	}
	other := errors.New("x")
	if Status(other) != other {
		t.Error("other errors must pass unchanged")
	}
}

// A request that was never sent is retried on another endpoint even on a
// route that is not idempotent.
func TestNotSentRetriedAnyRoute(t *testing.T) {
	g := New("u", LBRoundRobin, addrs(3), defaults())
	var seen []int
	n, err := g.Do(context.Background(), 0, pol(config.RouteResilience{}), func(_ context.Context, ep *Endpoint, n int) Outcome {
		seen = append(seen, ep.index)
		if n == 0 {
			return NotSent
		}
		return Success
	})
	if err != nil || n != 1 || len(seen) != 2 || seen[0] == seen[1] {
		t.Fatalf("Do = %d, %v, attempts on %v; want a second attempt elsewhere", n, err, seen)
	}
	seen = seen[:0]
	g.Do(context.Background(), 0, pol(config.RouteResilience{}), func(_ context.Context, ep *Endpoint, _ int) Outcome {
		seen = append(seen, ep.index)
		return Unavailable // may have been acted on: not retried
	})
	if len(seen) != 1 {
		t.Fatalf("UNAVAILABLE on a non-idempotent route retried: %v", seen)
	}
}
