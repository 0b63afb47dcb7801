package resilience

import (
	"testing"
	"time"
)

// simulate sends n requests, one per step of simulated time, through the
// guard's balancer; lat gives each endpoint's latency. It returns each
// endpoint's share of the requests.
func simulate(g *Guard, clk *manual, n int, step time.Duration, lat func(i int) time.Duration) []float64 {
	counts := make([]float64, len(g.s.eps))
	for k := range n {
		clk.add(step)
		ep := g.bal.Pick(uint64(k), 0)
		if ep == nil {
			continue
		}
		counts[ep.index]++
		ep.record(Success, lat(ep.index), clk.now())
	}
	for i := range counts {
		counts[i] /= float64(n)
	}
	return counts
}

// A 10× slower endpoint's share falls below 10 % within 5 s and comes back
// within 30 s of recovering (decay 1s, slow start unused: no ejection).
// Before adaptive weights, round robin and least request (with requests
// that finish at once) gave it a third.
func TestAdaptiveWeightsSlowEndpoint(t *testing.T) {
	for _, lb := range []string{LBRoundRobin, LBLeastRequest} {
		t.Run(lb, func(t *testing.T) {
			clk := newManual()
			rc := defaults()
			rc.AdaptiveWeights.Decay = time.Second
			g := New("u", lb, addrs(3), rc, clk.opt())
			slow := time.Duration(0)
			lat := func(i int) time.Duration {
				if i == 2 && slow > 0 {
					return slow
				}
				return time.Millisecond
			}
			base := simulate(g, clk, 2000, time.Millisecond, lat)
			if base[2] < 0.25 {
				t.Fatalf("baseline share of endpoint 2 = %.3f, want about 1/3", base[2])
			}
			slow = 10 * time.Millisecond
			simulate(g, clk, 4000, time.Millisecond, lat) // 4 s to adapt
			got := simulate(g, clk, 1000, time.Millisecond, lat)
			if got[2] >= 0.10 {
				t.Fatalf("5 s after becoming 10x slower endpoint 2 has %.3f of requests, want < 0.10 (all: %v)", got[2], got)
			}
			slow = 0
			simulate(g, clk, 25000, time.Millisecond, lat)
			got = simulate(g, clk, 5000, time.Millisecond, lat)
			if got[2] < 0.25 {
				t.Fatalf("30 s after recovering endpoint 2 has %.3f of requests, want >= 0.25", got[2])
			}
		})
	}
}

// Failures lower the weight too (success² factor), before any ejection.
func TestAdaptiveWeightsErrors(t *testing.T) {
	clk := newManual()
	rc := defaults()
	rc.OutlierDetection.Disabled = true
	rc.AdaptiveWeights.Decay = time.Second
	g := New("u", LBRoundRobin, addrs(3), rc, clk.opt())
	counts := make([]int, 3)
	for k := range 6000 {
		clk.add(time.Millisecond)
		ep := g.bal.Pick(0, 0)
		o := Success
		if ep.index == 0 && k%2 == 0 {
			o = Unavailable // endpoint 0 fails about half its requests
		}
		ep.record(o, time.Millisecond, clk.now())
		if k >= 5000 {
			counts[ep.index]++
		}
	}
	if counts[0] > 200 { // full share would be ~333
		t.Fatalf("endpoint failing 50%% got %d of 1000 requests, want < 200 (%v)", counts[0], counts)
	}
}

// P2C prefers the less loaded endpoint when latencies are equal.
func TestP2CLoad(t *testing.T) {
	clk := newManual()
	g := New("u", LBLeastRequest, addrs(2), defaults(), clk.opt())
	g.s.eps[0].inflight.Store(50)
	for range 100 {
		if ep := g.bal.Pick(0, 0); ep.index != 1 {
			t.Fatalf("picked loaded endpoint %d", ep.index)
		}
	}
}

// Weights floor: a terrible endpoint keeps min_weight_percent of the best.
func TestWeightsFloor(t *testing.T) {
	clk := newManual()
	rc := defaults()
	rc.AdaptiveWeights.MinWeightPercent = 5
	g := New("u", LBRoundRobin, addrs(2), rc, clk.opt())
	g.s.eps[0].record(Success, time.Millisecond, clk.now())
	g.s.eps[1].record(Success, time.Second, clk.now())
	w := g.Weights(nil)
	if w[0] != 1 || w[1] != 0.05 {
		t.Fatalf("weights %v, want [1 0.05]", w)
	}
	n := 0
	for range 1000 {
		clk.add(time.Microsecond)
		if g.bal.Pick(0, 0).index == 1 {
			n++
		}
	}
	if n < 30 || n > 70 {
		t.Fatalf("floored endpoint got %d of 1000 picks, want about 1000×0.05/1.05", n)
	}
}
