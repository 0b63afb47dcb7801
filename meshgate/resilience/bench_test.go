package resilience

import (
	"context"
	"testing"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
)

func benchGuard(b *testing.B, lb string) {
	rc := defaults()
	rc.AdaptiveConcurrency.Enabled = true
	g := New("u", lb, addrs(5), rc)
	p := pol(config.RouteResilience{Idempotent: true, RetryOn: []string{config.RetryOnUnavailable}, MaxAttempts: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	call := func(context.Context, *Endpoint, int) Outcome { return Success }
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := g.Do(ctx, uint64(i), p, call); err != nil {
			b.Fatal(err)
		}
	}
}

// Do (deadline check, gate, limiter, pick, record) allocates nothing.
func BenchmarkDoRoundRobin(b *testing.B)     { benchGuard(b, LBRoundRobin) }
func BenchmarkDoLeastRequest(b *testing.B)   { benchGuard(b, LBLeastRequest) }
func BenchmarkDoConsistentHash(b *testing.B) { benchGuard(b, LBConsistentHash) }

func TestDoDoesNotAllocate(t *testing.T) {
	for _, lb := range []string{LBRoundRobin, LBLeastRequest, LBConsistentHash} {
		rc := defaults()
		rc.AdaptiveConcurrency.Enabled = true
		g := New("u", lb, addrs(5), rc)
		p := pol(config.RouteResilience{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		call := func(context.Context, *Endpoint, int) Outcome { return Success }
		n := testing.AllocsPerRun(1000, func() { _, _ = g.Do(ctx, 42, p, call) })
		cancel()
		if n != 0 {
			t.Errorf("%s: Do allocates %.1f times per request", lb, n)
		}
	}
}
