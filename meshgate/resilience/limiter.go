package resilience

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter is an adaptive concurrency limit in the manner of Envoy's
// adaptive_concurrency filter (itself after Netflix concurrency-limits'
// gradient limiters):
//
//   - minRTT, the latency without queueing, is measured with the limit
//     pinned at min for one window, at start and then every
//     Window × LongWindow (so it cannot drift up under sustained load,
//     Gradient2's weak spot);
//   - every Window, with short the window's average latency:
//     gradient = clamp(tolerance × minRTT / short, 0.5, 2),
//     target = limit × gradient + √limit (headroom to probe upwards), and
//     the limit moves a fifth of the way there, within [min, max];
//   - a window with drops (timeouts, backend overload) cuts it by 10 %;
//   - a limit that is not used (peak in flight below half of it) does not
//     grow.
//
// Steady state against a saturated backend keeps latency near
// tolerance × minRTT: queues stay short.
type Limiter struct {
	min, max  float64
	tolerance float64
	window    time.Duration
	every     time.Duration // minRTT re-measurement period

	limit atomic.Int64 // current limit, read on the hot path

	mu        sync.Mutex
	cur       float64 // limit outside probes
	minRTT    float64 // ns; 0 = not measured yet
	probing   bool
	nextProbe time.Duration
	start     time.Duration
	started   bool
	sum       float64
	n         int
	dropped   bool
	peak      int64
	onChange  func(int)
}

// NewLimiter returns a limiter that starts by measuring minRTT, then
// continues from initial.
func NewLimiter(minLimit, maxLimit, initial int, tolerance float64, window time.Duration, longWindow int) *Limiter {
	l := &Limiter{min: float64(minLimit), max: float64(maxLimit), tolerance: tolerance, window: window,
		every: window * time.Duration(max(longWindow, 2)), cur: float64(initial), probing: true}
	l.limit.Store(int64(minLimit))
	return l
}

// Limit is the current concurrency limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// MinRTT is the last measured latency without queueing (0 before the
// first measurement).
func (l *Limiter) MinRTT() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Duration(l.minRTT)
}

// Record feeds one finished request: its latency, whether it was dropped
// (timed out or refused for overload), and how many were in flight.
func (l *Limiter) Record(now, rtt time.Duration, dropped bool, inflight int64) {
	l.mu.Lock()
	if !l.started {
		l.start, l.started = now, true
	}
	if dropped {
		l.dropped = true
	} else {
		l.sum += float64(rtt)
		l.n++
	}
	l.peak = max(l.peak, inflight)
	var changed func(int)
	lim := 0
	if now-l.start >= l.window {
		old := l.limit.Load()
		l.update(now)
		if n := l.limit.Load(); n != old {
			changed, lim = l.onChange, int(n)
		}
		l.start, l.sum, l.n, l.dropped, l.peak = now, 0, 0, false, 0
	}
	l.mu.Unlock()
	if changed != nil {
		changed(lim)
	}
}

// update ends a window; l.mu held.
func (l *Limiter) update(now time.Duration) {
	if l.probing {
		if l.n == 0 {
			return // no successful sample yet: keep measuring
		}
		l.minRTT = l.sum / float64(l.n)
		l.probing = false
		l.nextProbe = now + l.every
		l.limit.Store(int64(l.cur))
		return
	}
	if now >= l.nextProbe {
		l.probing = true
		l.limit.Store(int64(l.min))
		return
	}
	next := l.cur
	switch {
	case l.dropped:
		next = l.cur * 0.9
	case l.n == 0:
		return
	default:
		short := l.sum / float64(l.n)
		l.minRTT = min(l.minRTT, short) // a faster window lowers the baseline at once
		if float64(l.peak) < l.cur/2 {
			return // application-limited: no evidence for a higher limit
		}
		g := min(2, max(0.5, l.tolerance*l.minRTT/short))
		target := l.cur*g + math.Sqrt(l.cur)
		next = l.cur*0.8 + target*0.2
	}
	l.cur = min(l.max, max(l.min, next))
	l.limit.Store(int64(l.cur))
}
