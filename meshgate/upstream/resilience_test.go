package upstream_test

import (
	"context"
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
