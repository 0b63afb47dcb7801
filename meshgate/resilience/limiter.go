package resilience

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter is an adaptive concurrency limit in the manner of Netflix
// concurrency-limits' Gradient2 and Envoy's adaptive_concurrency filter.
// Every Window it compares the window's average latency (short) with a
// long-term average (long): gradient = clamp(tolerance × long / short,
// 0.5, 1); new = limit × gradient + √limit (headroom for growth); the limit
// moves a fifth of the way there, within [min, max]. A window with drops
// (timeouts, backend overload) cuts the limit by 10 %. A limit that is not
// used (in flight stayed below half of it) does not grow.
type Limiter struct {
	min, max  float64
	tolerance float64
	window    time.Duration
	longN     float64

	limit atomic.Int64 // current limit, read on the hot path

	mu       sync.Mutex
	cur      float64
	long     float64 // ns
	start    time.Duration
	sum      float64
	n        int
	dropped  bool
	peak     int64
	onChange func(int)
}

// NewLimiter returns a limiter starting at initial.
func NewLimiter(minLimit, maxLimit, initial int, tolerance float64, window time.Duration, longWindow int) *Limiter {
	l := &Limiter{min: float64(minLimit), max: float64(maxLimit), tolerance: tolerance, window: window,
		longN: float64(longWindow), cur: float64(initial)}
	l.limit.Store(int64(initial))
	return l
}

// Limit is the current concurrency limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// Record feeds one finished request: its latency, whether it was dropped
// (timed out or refused for overload), and how many were in flight.
func (l *Limiter) Record(now, rtt time.Duration, dropped bool, inflight int64) {
	l.mu.Lock()
	if l.n == 0 && !l.dropped && l.start == 0 {
		l.start = now
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
		if l.update() {
			changed, lim = l.onChange, int(l.limit.Load())
		}
		l.start, l.sum, l.n, l.dropped, l.peak = now, 0, 0, false, 0
	}
	l.mu.Unlock()
	if changed != nil {
		changed(lim)
	}
}

// update recomputes the limit at the end of a window; l.mu held.
func (l *Limiter) update() bool {
	next := l.cur
	switch {
	case l.dropped:
		next = l.cur * 0.9
	case l.n == 0:
		return false
	default:
		short := l.sum / float64(l.n)
		if l.long == 0 {
			l.long = short
		} else {
			l.long += (short - l.long) / l.longN
		}
		// After a long overload the long average is inflated: let it come
		// down quickly once latency is back to normal.
		if l.long > 2*short {
			l.long *= 0.95
		}
		if float64(l.peak) < l.cur/2 {
			return false // application-limited: no evidence for a higher limit
		}
		g := min(1, max(0.5, l.tolerance*l.long/short))
		target := l.cur*g + math.Sqrt(l.cur)
		next = l.cur*0.8 + target*0.2
	}
	l.cur = min(l.max, max(l.min, next))
	old := l.limit.Swap(int64(l.cur))
	return old != int64(l.cur)
}
