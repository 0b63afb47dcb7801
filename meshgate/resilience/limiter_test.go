package resilience

import (
	"testing"
	"time"
)

// feed runs windows of the limiter against a backend that serves capacity
// requests at once in base time and queues the rest (latency grows with
// in flight past capacity); in flight is always the current limit (the
// offered load is higher). It returns the limit after the windows.
func feed(l *Limiter, clk *manual, windows, capacity int, base time.Duration) int {
	for range windows {
		for range 10 {
			clk.add(10 * time.Millisecond)
			inflight := l.Limit()
			rtt := base
			if inflight > capacity {
				rtt = base * time.Duration(inflight) / time.Duration(capacity)
			}
			l.Record(clk.now(), rtt, false, int64(inflight))
		}
	}
	return l.Limit()
}

// The gradient limit settles near the backend's real concurrency when the
// offered load is higher (queues stay short: latency within tolerance of
// the baseline), and rises again when the backend gets faster.
func TestLimiterFindsCapacity(t *testing.T) {
	clk := newManual()
	l := NewLimiter(4, 1000, 20, 1.5, 100*time.Millisecond, 60)
	// Warm up the long-term average at the unloaded latency.
	for range 20 {
		clk.add(100 * time.Millisecond)
		l.Record(clk.now(), 10*time.Millisecond, false, 1)
	}
	got := feed(l, clk, 300, 50, 10*time.Millisecond)
	if got < 40 || got > 100 {
		t.Fatalf("limit %d against a backend of concurrency 50, want within [40, 100] (≤ 2× queueing)", got)
	}
	// Capacity drops to 10: the limit follows within a few seconds.
	got = feed(l, clk, 50, 10, 10*time.Millisecond)
	if got > 25 {
		t.Fatalf("limit %d 5 s after capacity fell to 10, want ≤ 25", got)
	}
	// Back to 50: the limit grows again.
	got = feed(l, clk, 300, 50, 10*time.Millisecond)
	if got < 40 {
		t.Fatalf("limit %d after capacity came back to 50, want ≥ 40", got)
	}
}

// Drops (timeouts, overload replies) cut the limit; an unused limit does
// not grow.
func TestLimiterDropsAndAppLimited(t *testing.T) {
	clk := newManual()
	l := NewLimiter(4, 1000, 100, 1.5, 100*time.Millisecond, 600)
	for range 2 { // the minRTT measurement at start
		clk.add(100 * time.Millisecond)
		l.Record(clk.now(), 10*time.Millisecond, false, 4)
	}
	if l.Limit() != 100 || l.MinRTT() != 10*time.Millisecond {
		t.Fatalf("after the first minRTT window: limit %d, minRTT %s; want 100, 10ms", l.Limit(), l.MinRTT())
	}
	for range 5 {
		clk.add(100 * time.Millisecond)
		l.Record(clk.now(), time.Second, true, 100)
	}
	if got := l.Limit(); got > 70 {
		t.Fatalf("limit %d after 5 windows of drops, want ≤ 70 (×0.9 each)", got)
	}
	before := l.Limit()
	for range 50 {
		clk.add(100 * time.Millisecond)
		l.Record(clk.now(), 10*time.Millisecond, false, 2) // only 2 in flight
	}
	if got := l.Limit(); got > before {
		t.Fatalf("application-limited: limit grew from %d to %d", before, got)
	}
}
