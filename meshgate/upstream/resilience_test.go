package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// Hedging through a private pool against real legacy servers: one of two
// endpoints answers in 300 ms; with hedge_delay 20 ms every request is
// answered in well under 300 ms (the hedge to the fast endpoint wins, the
// slow attempt is cancelled). Without hedging half the requests take
// 300 ms.
func TestPrivatePoolHedging(t *testing.T) {
	slow := startLegacy(t, "127.0.0.1:0", legacy.ServerOptions{Latency: 300 * time.Millisecond})
	fast := startLegacy(t, "127.0.0.1:0", legacy.ServerOptions{})
	p := newPool(t, config.LBRoundRobin, []string{slow.Addr().String(), fast.Addr().String()}, nil)
	pol := resilience.PolicyFor(config.RouteResilience{Idempotent: true, MaxAttempts: 2, HedgeDelay: 20 * time.Millisecond,
		RetryOn: []string{config.RetryOnUnavailable}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		t0 := time.Now()
		r, err := p.DoPolicy(ctx, &codec.Frame{Cmd: legacy.CmdEcho, UIN: uint64(i), Body: []byte(fmt.Sprint(i))}, &pol)
		el := time.Since(t0)
		if err != nil || string(r.Body) != fmt.Sprint(i) {
			t.Fatalf("request %d: %v %v", i, r, err)
		}
		if el > 200*time.Millisecond {
			t.Fatalf("request %d took %s: the hedge did not win", i, el)
		}
	}
	if h := p.Guard().Stats().Retries["hedge"]; h == 0 {
		t.Fatal("no hedge was sent")
	}
}

// TestDoPolicyUntil: DoPolicyUntil against real legacy servers, the
// deadline a value on a context without one: replies as DoPolicy's (each
// its own copy), a slow backend ends in an error wrapping
// context.DeadlineExceeded at the deadline (the connection's timer), the
// context's cancellation ends the request at once, and a call allocates
// no more than the reply's copy (DoPolicy with a deadline context: the
// context, its timer and the wait's).
func TestDoPolicyUntil(t *testing.T) {
	fast := startLegacy(t, "127.0.0.1:0", legacy.ServerOptions{})
	p := newPool(t, config.LBRoundRobin, []string{fast.Addr().String()}, nil)
	pol := resilience.PolicyFor(config.RouteResilience{Idempotent: true, MaxAttempts: 2, RetryOn: []string{config.RetryOnUnavailable}})
	var kept []*codec.Frame
	for i := range 20 {
		r, err := p.DoPolicyUntil(context.Background(), time.Now().Add(5*time.Second), &codec.Frame{Cmd: legacy.CmdEcho, UIN: uint64(i), Body: []byte(fmt.Sprint("body-", i))}, &pol)
		if err != nil || string(r.Body) != fmt.Sprint("body-", i) {
			t.Fatalf("call %d: %v %v", i, r, err)
		}
		kept = append(kept, r)
	}
	for i, r := range kept { // later replies did not overwrite earlier ones
		if string(r.Body) != fmt.Sprint("body-", i) {
			t.Fatalf("reply %d now %q", i, r.Body)
		}
	}

	slow := startLegacy(t, "127.0.0.1:0", legacy.ServerOptions{Latency: 2 * time.Second})
	sp := newPool(t, config.LBRoundRobin, []string{slow.Addr().String()}, nil)
	t0 := time.Now()
	_, err := sp.DoPolicyUntil(context.Background(), t0.Add(100*time.Millisecond), &codec.Frame{Cmd: legacy.CmdEcho, Body: []byte("slow")}, &pol)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow backend: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(t0); el < 90*time.Millisecond || el > time.Second {
		t.Fatalf("deadline after %v, want about 100ms", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	t0 = time.Now()
	_, err = sp.DoPolicyUntil(ctx, t0.Add(5*time.Second), &codec.Frame{Cmd: legacy.CmdEcho, Body: []byte("cancelled")}, &pol)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v, want Canceled", err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("cancel took %v", el)
	}

	if raceEnabled {
		return // the race detector's sync.Pool drops objects at random
	}
	req := &codec.Frame{Cmd: legacy.CmdEcho, UIN: 7, Body: []byte("allocs")}
	until := testing.AllocsPerRun(200, func() {
		if _, err := p.DoPolicyUntil(context.Background(), time.Now().Add(5*time.Second), req, &pol); err != nil {
			t.Fatal(err)
		}
	})
	withCtx := testing.AllocsPerRun(200, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := p.DoPolicy(ctx, req, &pol); err != nil {
			t.Fatal(err)
		}
		cancel()
	})
	t.Logf("allocations per call: DoPolicyUntil %.1f, DoPolicy with a deadline context %.1f", until, withCtx)
	if until > 1 {
		t.Fatalf("DoPolicyUntil: %.1f allocations per call, want at most the reply's copy (1)", until)
	}
}
