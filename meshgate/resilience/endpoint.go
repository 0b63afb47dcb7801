package resilience

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Clock returns monotonic time since an arbitrary origin. Tests inject a
// manual clock; production uses MonoClock.
type Clock func() time.Duration

// MonoClock returns a Clock reading the monotonic clock.
func MonoClock() Clock {
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

// EjectReason says why an endpoint was ejected.
type EjectReason uint8

// Ejection reasons.
const (
	EjectConsecutive EjectReason = iota // consecutive_failures
	EjectFailureRate                    // failure_rate
)

func (r EjectReason) String() string {
	if r == EjectFailureRate {
		return "failure_rate"
	}
	return "consecutive_failures"
}

// Endpoint is one backend address's health and load state. It is safe for
// concurrent use; the hot-path methods do not allocate.
type Endpoint struct {
	addr  string
	index int
	base  float64
	set   *set

	inflight     atomic.Int64
	down         atomic.Bool  // connection layer says unreachable
	wasUp        atomic.Bool  // has been up once (slow start only on a return)
	ejectedUntil atomic.Int64 // clock ns; 0 = not ejected
	rampFrom     atomic.Int64 // clock ns + 1 when slow start began; 0 = none
	latBits      atomic.Uint64
	lastSample   atomic.Int64 // clock ns of the last latency sample
	srBits       atomic.Uint64

	mu        sync.Mutex
	lat, sr   float64 // EWMAs; lat 0 = no sample yet
	last      time.Duration
	consec    int
	samples   int // EWMA samples so far, up to warmSamples
	winStart  time.Duration
	winTotal  int
	winFail   int
	ejections int // multiplier of the next ejection time
}

// minAlpha is the least weight of one sample in the EWMAs; the first
// warmSamples are averaged plainly.
const (
	minAlpha    = 0.02
	warmSamples = 10
)

// set is what an upstream's endpoints share.
type set struct {
	name    string
	clock   Clock
	obs     Observer
	eps     []*Endpoint
	ejected atomic.Int32

	weights  bool
	decay    float64 // ns
	ramp     time.Duration
	minShare float64 // minimum weight as a fraction of the best

	outlier     bool
	consecutive int
	ratePct     int
	rateMin     int
	interval    time.Duration
	baseEject   time.Duration
	maxEject    time.Duration
	maxEjectPct int
}

func newEndpoint(s *set, i int, addr string) *Endpoint {
	e := &Endpoint{addr: addr, index: i, base: 1, set: s, sr: 1}
	e.wasUp.Store(true) // up from the start; a pool that connects first calls SetDown(true)
	e.srBits.Store(math.Float64bits(1))
	return e
}

// Addr is the endpoint's host:port.
func (e *Endpoint) Addr() string { return e.addr }

// Index is the endpoint's position in its upstream's list.
func (e *Endpoint) Index() int { return e.index }

// InFlight is the number of attempts on this endpoint not yet finished.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// Hold counts work outside Guard.Do as in flight on the endpoint (an open
// stream exchange, which least_request must see) until release is called.
func (e *Endpoint) Hold() (release func()) {
	e.inflight.Add(1)
	return func() { e.inflight.Add(-1) }
}

// SetDown tells the endpoint its connection layer has no live connection
// (down) or has one again; a down endpoint is never picked. Coming back up
// after an outage starts the slow-start ramp (the first connection does
// not: every endpoint starts together).
func (e *Endpoint) SetDown(down bool) {
	if down && !e.down.Load() && e.inflight.Load() == 0 && e.lastSample.Load() == 0 {
		e.wasUp.Store(false) // never used yet: the coming up is the first connection
	}
	if e.down.Swap(down) && !down && e.wasUp.Swap(true) {
		e.startRamp(e.set.clock()) // back after an outage (not the first connection)
	}
}

// Latency is the endpoint's latency EWMA (0 before the first sample).
func (e *Endpoint) Latency() time.Duration {
	return time.Duration(math.Float64frombits(e.latBits.Load()))
}

// SuccessRate is the endpoint's success-rate EWMA in [0, 1].
func (e *Endpoint) SuccessRate() float64 { return math.Float64frombits(e.srBits.Load()) }

// Ejected reports whether the endpoint is ejected now.
func (e *Endpoint) Ejected() bool { return !e.available(e.set.clock()) && !e.down.Load() }

// Available reports whether the endpoint may be picked: connected and not
// ejected. An ejection that has run out ends here (the endpoint returns
// with slow start).
func (e *Endpoint) Available() bool { return e.available(e.set.clock()) }

func (e *Endpoint) available(now time.Duration) bool {
	if u := e.ejectedUntil.Load(); u != 0 {
		if int64(now) < u {
			return false
		}
		if e.ejectedUntil.CompareAndSwap(u, 0) {
			e.unEject(now)
		}
	}
	return !e.down.Load()
}

func (e *Endpoint) unEject(now time.Duration) {
	e.set.ejected.Add(-1)
	e.mu.Lock()
	// Forget the failing history: the endpoint starts over at the floor
	// of its slow-start ramp.
	e.lat, e.sr, e.consec, e.winTotal, e.winFail, e.winStart, e.last, e.samples = 0, 1, 0, 0, 0, now, 0, 0
	e.latBits.Store(0)
	e.srBits.Store(math.Float64bits(1))
	e.mu.Unlock()
	e.startRamp(now)
	e.set.obs.Returned(e)
}

func (e *Endpoint) startRamp(now time.Duration) {
	if e.set.ramp > 0 {
		e.rampFrom.Store(int64(now) + 1)
	}
}

// rampFactor is the slow-start multiplier in (0, 1].
func (e *Endpoint) rampFactor(now time.Duration) float64 {
	r := e.rampFrom.Load()
	if r == 0 {
		return 1
	}
	el := float64(int64(now) - (r - 1))
	f := el / float64(e.set.ramp)
	if f >= 1 {
		e.rampFrom.CompareAndSwap(r, 0)
		return 1
	}
	return max(f, e.set.minShare)
}

// quality is base × success² × slow-start ramp: the weight before latency.
func (e *Endpoint) quality(now time.Duration) float64 {
	sr := e.SuccessRate()
	return e.base * sr * sr * e.rampFactor(now)
}

// Record feeds one finished attempt: its outcome and how long it took.
// It updates the EWMAs and may eject the endpoint.
func (e *Endpoint) Record(o Outcome, rtt time.Duration) { e.record(o, rtt, e.set.clock()) }

func (e *Endpoint) record(o Outcome, rtt time.Duration, now time.Duration) {
	if o == Cancelled {
		return
	}
	s := e.set
	fail := o.failed()
	e.mu.Lock()
	if s.weights {
		w := 0.0
		if e.last != 0 || e.lat != 0 {
			// Time-decayed, but each sample weighs at least minAlpha, so a
			// burst of samples right after the first moves the average too.
			w = min(math.Exp(-float64(now-e.last)/s.decay), 1-minAlpha)
		}
		if e.samples < warmSamples { // plain mean of the first samples: one odd first sample fades fast
			e.samples++
			w = min(w, 1-1/float64(e.samples))
		}
		e.last = now
		// Fast failures (refused connections) say nothing of latency.
		if o == Success || o == Timeout {
			if e.lat == 0 {
				e.lat = float64(rtt)
			} else {
				e.lat = e.lat*w + float64(rtt)*(1-w)
			}
			e.latBits.Store(math.Float64bits(e.lat))
			e.lastSample.Store(int64(now))
		}
		v := 1.0
		if fail {
			v = 0
		}
		e.sr = e.sr*w + v*(1-w)
		e.srBits.Store(math.Float64bits(e.sr))
	}
	var reason EjectReason
	eject := false
	if s.outlier && e.ejectedUntil.Load() == 0 {
		if now-e.winStart >= s.interval {
			if e.ejections > 0 && e.winFail*100 < s.ratePct*e.winTotal {
				e.ejections-- // a healthy interval shortens the next ejection
			}
			e.winStart, e.winTotal, e.winFail = now, 0, 0
		}
		e.winTotal++
		if fail {
			e.winFail++
			e.consec++
		} else {
			e.consec = 0
		}
		switch {
		case fail && e.consec >= s.consecutive:
			eject, reason = true, EjectConsecutive
		case fail && e.winTotal >= s.rateMin && e.winFail*100 >= s.ratePct*e.winTotal:
			eject, reason = true, EjectFailureRate
		}
	}
	var d time.Duration
	if eject {
		if eject = s.tryEject(); eject {
			e.ejections++
			d = min(s.baseEject*time.Duration(e.ejections), s.maxEject)
			e.ejectedUntil.Store(int64(now + d))
			e.consec, e.winTotal, e.winFail, e.winStart = 0, 0, 0, now
		}
	}
	e.mu.Unlock()
	if eject {
		s.obs.Ejected(e, reason, d)
	}
}

// tryEject takes one of the ejection slots max_ejection_percent allows
// (at least one when the upstream has two or more endpoints).
func (s *set) tryEject() bool {
	n := len(s.eps)
	if n < 2 {
		return false
	}
	allowed := max(1, n*s.maxEjectPct/100)
	for {
		c := s.ejected.Load()
		if int(c) >= allowed {
			return false
		}
		if s.ejected.CompareAndSwap(c, c+1) {
			return true
		}
	}
}
