package resilience

import (
	"testing"
	"time"
)

func ejectedSet(g *Guard) []bool {
	out := make([]bool, len(g.s.eps))
	for i, e := range g.s.eps {
		out[i] = !e.available(g.s.clock())
	}
	return out
}

// Consecutive failures eject; the ejection lasts base × count, capped, and
// the endpoint returns on its own with slow start.
func TestOutlierConsecutive(t *testing.T) {
	clk := newManual()
	rc := defaults()
	rc.OutlierDetection.ConsecutiveFailures = 3
	rc.OutlierDetection.BaseEjectionTime = time.Second
	rc.OutlierDetection.MaxEjectionTime = 2500 * time.Millisecond
	rc.AdaptiveWeights.SlowStart = 10 * time.Second
	g := New("u", LBRoundRobin, addrs(3), rc, clk.opt())
	e := g.s.eps[1]
	fail := func() {
		for range 3 {
			clk.add(time.Millisecond)
			e.record(ConnectFailure, time.Millisecond, clk.now())
		}
	}
	e.record(Unavailable, time.Millisecond, clk.now())
	e.record(Success, time.Millisecond, clk.now()) // resets the run
	e.record(Unavailable, time.Millisecond, clk.now())
	if !e.available(clk.now()) {
		t.Fatal("ejected before 3 consecutive failures")
	}
	wantDur := []time.Duration{time.Second, 2 * time.Second, 2500 * time.Millisecond}
	for round, d := range wantDur {
		e.record(Success, time.Millisecond, clk.now())
		fail()
		if e.available(clk.now()) {
			t.Fatalf("round %d: not ejected after 3 consecutive failures", round)
		}
		for range 300 {
			if p := g.bal.Pick(0, 0); p == e {
				t.Fatalf("round %d: ejected endpoint picked", round)
			}
		}
		clk.add(d - time.Millisecond)
		if e.available(clk.now()) {
			t.Fatalf("round %d: returned before %s", round, d)
		}
		clk.add(2 * time.Millisecond)
		if !e.available(clk.now()) {
			t.Fatalf("round %d: still ejected after %s", round, d)
		}
	}
	st := g.Stats()
	if st.Ejections != 3 || st.Ejected != 0 {
		t.Fatalf("stats %+v, want 3 ejections, 0 ejected now", st)
	}
	// Slow start: just back, the endpoint gets only a small share.
	w := g.Weights(nil)
	if w[1] > 0.05 {
		t.Fatalf("weight right after return = %.3f, want ≤ min share", w[1])
	}
	clk.add(5 * time.Second)
	if w = g.Weights(nil); w[1] < 0.45 || w[1] > 0.55 {
		t.Fatalf("weight half way through slow start = %.3f, want ~0.5", w[1])
	}
	clk.add(5 * time.Second)
	if w = g.Weights(nil); w[1] != 1 {
		t.Fatalf("weight after slow start = %.3f, want 1", w[1])
	}
}

// A failure rate over the threshold ejects even without a long run of
// consecutive failures.
func TestOutlierFailureRate(t *testing.T) {
	clk := newManual()
	rc := defaults()
	rc.OutlierDetection.FailureRatePercent = 30
	rc.OutlierDetection.FailureRateMinRequests = 20
	g := New("u", LBRoundRobin, addrs(3), rc, clk.opt())
	e := g.s.eps[0]
	for k := range 40 {
		clk.add(time.Millisecond)
		o := Success
		if k%2 == 0 {
			o = Unavailable // 50 %, never two in a row
		}
		e.record(o, time.Millisecond, clk.now())
		if k < 19 && !e.available(clk.now()) {
			t.Fatalf("ejected after %d requests, before failure_rate_min_requests", k+1)
		}
	}
	if e.available(clk.now()) {
		t.Fatal("50 % failing endpoint not ejected at failure_rate_percent 30")
	}
	// A healthy endpoint's occasional failure does not eject it.
	h := g.s.eps[1]
	for k := range 200 {
		clk.add(time.Millisecond)
		o := Success
		if k%10 == 0 {
			o = Timeout
		}
		h.record(o, time.Millisecond, clk.now())
	}
	if !h.available(clk.now()) {
		t.Fatal("endpoint failing 10 % ejected at threshold 30 %")
	}
}

// max_ejection_percent caps how many endpoints are out at once.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	clk := newManual()
	rc := defaults()
	rc.OutlierDetection.MaxEjectionPercent = 50
	g := New("u", LBRoundRobin, addrs(5), rc, clk.opt())
	for _, i := range []int{0, 1, 2, 3} {
		for range 10 {
			g.s.eps[i].record(ConnectFailure, time.Millisecond, clk.now())
		}
	}
	n := 0
	for _, out := range ejectedSet(g) {
		if out {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d of 5 endpoints ejected with max_ejection_percent 50, want 2", n)
	}
	// A single endpoint is never ejected: there is nowhere else to go.
	one := New("u1", LBRoundRobin, addrs(1), rc, clk.opt())
	for range 10 {
		one.s.eps[0].record(ConnectFailure, time.Millisecond, clk.now())
	}
	if !one.s.eps[0].available(clk.now()) {
		t.Fatal("the only endpoint was ejected")
	}
}

// Consistent hash (SET model): while an endpoint is ejected only its users
// move (to the next point on the ring) and they come back after it
// returns; no user of another endpoint ever moves.
func TestRingEjectionMovesOnlyItsUsers(t *testing.T) {
	clk := newManual()
	rc := defaults()
	rc.OutlierDetection.BaseEjectionTime = time.Second
	g := New("u", LBConsistentHash, addrs(3), rc, clk.opt())
	const users = 5000
	before := make([]int, users)
	for u := range users {
		before[u] = g.Pick(uint64(u)).index
	}
	for range 5 {
		g.s.eps[1].record(Unavailable, time.Millisecond, clk.now())
	}
	moved := 0
	for u := range users {
		now := g.Pick(uint64(u)).index
		switch {
		case before[u] != 1 && now != before[u]:
			t.Fatalf("user %d of endpoint %d moved to %d", u, before[u], now)
		case before[u] == 1 && now == 1:
			t.Fatalf("user %d still on the ejected endpoint", u)
		case before[u] == 1:
			moved++
		}
	}
	if moved < users/6 {
		t.Fatalf("only %d users moved; endpoint 1 should own about a third", moved)
	}
	clk.add(1100 * time.Millisecond)
	for u := range users {
		if now := g.Pick(uint64(u)).index; now != before[u] {
			t.Fatalf("after return user %d is on %d, was on %d", u, now, before[u])
		}
	}
}
