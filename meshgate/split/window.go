package split

import (
	"context"
	"math"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
)

// snapshot is one reading of a backend's counters and histogram.
type snapshot struct {
	at    time.Time
	codes [numCodes]uint64
	hist  []uint64 // cumulative bucket counts, len(LatencyBuckets)
	count uint64
}

func read(s *BackendStats, at time.Time) snapshot {
	sn := snapshot{at: at, hist: make([]uint64, len(LatencyBuckets))}
	var m dto.Metric
	for c := range numCodes {
		m.Reset()
		if s.codes[c].Write(&m) == nil {
			sn.codes[c] = uint64(m.GetCounter().GetValue())
		}
	}
	m.Reset()
	if s.hist.Write(&m) == nil {
		h := m.GetHistogram()
		sn.count = h.GetSampleCount()
		for i, b := range h.GetBucket() {
			if i < len(sn.hist) {
				sn.hist[i] = b.GetCumulativeCount()
			}
		}
	}
	return sn
}

// Tracker keeps a short history of every backend's counters so that rates,
// error rates and p99 over the last Window can be computed in process
// (/migrate/status) from the very counters /metrics exports.
type Tracker struct {
	m      *Metrics
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	hist map[*BackendStats][]snapshot
}

// NewTracker tracks m's backends over window. now may be nil (time.Now).
func NewTracker(m *Metrics, window time.Duration, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{m: m, window: window, now: now, hist: map[*BackendStats][]snapshot{}}
}

// SetWindow changes the window (on reload).
func (t *Tracker) SetWindow(w time.Duration) {
	t.mu.Lock()
	t.window = w
	t.mu.Unlock()
}

// Sample reads every backend's counters once and drops readings older than
// the window.
func (t *Tracker) Sample() {
	now := t.now()
	all := t.m.All()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range all {
		h := append(t.hist[s], read(s, now))
		cut := 0
		// keep one reading at or before now-window as the base
		for cut+1 < len(h) && !h[cut+1].at.After(now.Add(-t.window)) {
			cut++
		}
		t.hist[s] = append(h[:0:0], h[cut:]...)
	}
}

// Run samples every interval until ctx ends.
func (t *Tracker) Run(ctx context.Context, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	t.Sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			t.Sample()
		}
	}
}

// WindowStats are a backend's numbers over the recent window.
type WindowStats struct {
	// Span is the time the numbers cover (≤ the window; 0 = no history yet).
	Span      time.Duration     `json:"span"`
	Requests  uint64            `json:"requests"`
	Errors    uint64            `json:"errors"` // any code but OK
	RPS       float64           `json:"rps"`
	ErrorRate float64           `json:"error_rate"` // errors / requests, 0 without requests
	P50       float64           `json:"p50_seconds"`
	P99       float64           `json:"p99_seconds"` // histogram_quantile over the window; 0 without requests
	Codes     map[string]uint64 `json:"codes,omitempty"`
	// Total counts since start.
	Total uint64 `json:"total"`
}

// Window returns s's numbers between the reading about one window ago and
// a fresh reading now.
func (t *Tracker) Window(s *BackendStats) WindowStats {
	now := t.now()
	cur := read(s, now)
	t.mu.Lock()
	var base *snapshot
	if h := t.hist[s]; len(h) > 0 {
		// the newest reading at or before now-window, else the oldest
		i := 0
		for i+1 < len(h) && !h[i+1].at.After(now.Add(-t.window)) {
			i++
		}
		b := h[i]
		base = &b
	}
	t.mu.Unlock()
	var ws WindowStats
	for _, c := range cur.codes {
		ws.Total += c
	}
	if base == nil {
		return ws
	}
	ws.Span = now.Sub(base.at)
	for c := range numCodes {
		d := cur.codes[c] - base.codes[c]
		if d == 0 {
			continue
		}
		if ws.Codes == nil {
			ws.Codes = map[string]uint64{}
		}
		ws.Codes[codes.Code(c).String()] = d
		ws.Requests += d
		if c != int(codes.OK) {
			ws.Errors += d
		}
	}
	if ws.Span > 0 {
		ws.RPS = float64(ws.Requests) / ws.Span.Seconds()
	}
	if ws.Requests > 0 {
		ws.ErrorRate = float64(ws.Errors) / float64(ws.Requests)
	}
	delta := make([]uint64, len(cur.hist))
	for i := range delta {
		delta[i] = cur.hist[i] - base.hist[i]
	}
	n := cur.count - base.count
	ws.P50 = quantile(0.5, delta, n)
	ws.P99 = quantile(0.99, delta, n)
	return ws
}

// quantile estimates the q-quantile from cumulative bucket counts over
// LatencyBuckets (n = all observations, including those past the last
// bound), interpolating linearly inside a bucket like Prometheus'
// histogram_quantile. Past the last bound it returns the last bound.
func quantile(q float64, cum []uint64, n uint64) float64 {
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var prevCount uint64
	lower := 0.0
	for i, c := range cum {
		if float64(c) >= rank {
			inBucket := c - prevCount
			if inBucket == 0 {
				return LatencyBuckets[i]
			}
			return lower + (LatencyBuckets[i]-lower)*(rank-float64(prevCount))/float64(inBucket)
		}
		prevCount, lower = c, LatencyBuckets[i]
	}
	return math.Max(lower, LatencyBuckets[len(LatencyBuckets)-1])
}
