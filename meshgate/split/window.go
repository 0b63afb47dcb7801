package split

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
)

// Key names one backend of one route in a metric family: the route id
// (or, in the unified request metrics, the listener and route label) and
// the upstream.
type Key struct {
	Listener, Route, Upstream string
}

// Reading is one read of a key's counters and latency histogram.
type Reading struct {
	Codes   [numCodes]uint64
	Bounds  []float64 // histogram upper bounds
	Buckets []uint64  // cumulative counts per bound
	Count   uint64    // observations, including those past the last bound
}

// Source reads the current counters of every key it knows.
type Source interface {
	Read() map[Key]*Reading
}

func readHistogram(h *dto.Histogram, r *Reading) {
	r.Count = h.GetSampleCount()
	r.Bounds, r.Buckets = r.Bounds[:0:0], nil
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		r.Bounds = append(r.Bounds, b.GetUpperBound())
		r.Buckets = append(r.Buckets, b.GetCumulativeCount())
	}
}

// GatherSource reads a request counter family (labels listener, route,
// upstream, code = gRPC code name) and a latency histogram family (labels
// listener, route, upstream) from a Gatherer, e.g. MeshGate's
// meshgate_requests_total and meshgate_request_duration_seconds.
type GatherSource struct {
	Gatherer          prometheus.Gatherer
	Requests, Latency string
}

var codeByName = func() map[string]int {
	m := map[string]int{}
	for c := range numCodes {
		m[codes.Code(c).String()] = c
	}
	return m
}()

// Read implements Source.
func (g GatherSource) Read() map[Key]*Reading {
	out := map[Key]*Reading{}
	fams, _ := g.Gatherer.Gather() // a partial result is still useful
	get := func(m *dto.Metric) (Key, string) {
		var k Key
		var code string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "listener":
				k.Listener = l.GetValue()
			case "route":
				k.Route = l.GetValue()
			case "upstream":
				k.Upstream = l.GetValue()
			case "code":
				code = l.GetValue()
			}
		}
		if out[k] == nil {
			out[k] = &Reading{}
		}
		return k, code
	}
	for _, f := range fams {
		switch f.GetName() {
		case g.Requests:
			for _, m := range f.GetMetric() {
				k, code := get(m)
				c, ok := codeByName[code]
				if !ok {
					c = int(codes.Unknown)
				}
				out[k].Codes[c] += uint64(m.GetCounter().GetValue())
			}
		case g.Latency:
			for _, m := range f.GetMetric() {
				k, _ := get(m)
				readHistogram(m.GetHistogram(), out[k])
			}
		}
	}
	return out
}

type snapshot struct {
	at time.Time
	r  *Reading
}

// Tracker keeps a short history of every key's counters so that rates,
// error rates and p99 over the last window can be computed in process
// (/migrate/status) from the very counters /metrics exports.
type Tracker struct {
	src    Source
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	hist map[Key][]snapshot
}

// NewTracker tracks src over window. now may be nil (time.Now).
func NewTracker(src Source, window time.Duration, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{src: src, window: window, now: now, hist: map[Key][]snapshot{}}
}

// SetWindow changes the window (on reload).
func (t *Tracker) SetWindow(w time.Duration) {
	t.mu.Lock()
	t.window = w
	t.mu.Unlock()
}

// Sample reads every key once and drops readings older than needed.
func (t *Tracker) Sample() {
	now := t.now()
	all := t.src.Read()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, r := range all {
		h := append(t.hist[k], snapshot{now, r})
		cut := 0
		// keep one reading at or before now-window as the base
		for cut+1 < len(h) && !h[cut+1].at.After(now.Add(-t.window)) {
			cut++
		}
		t.hist[k] = append(h[:0:0], h[cut:]...)
	}
	for k := range t.hist { // keys gone from the source
		if all[k] == nil {
			delete(t.hist, k)
		}
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

// Window returns one key's numbers (see Windows).
func (t *Tracker) Window(k Key) WindowStats { return t.Windows([]Key{k})[k] }

// Windows returns each key's numbers between the reading about one window
// ago and a fresh reading now (one read for all keys).
func (t *Tracker) Windows(keys []Key) map[Key]WindowStats {
	now := t.now()
	cur := t.src.Read()
	out := make(map[Key]WindowStats, len(keys))
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		c := cur[k]
		if c == nil {
			out[k] = WindowStats{}
			continue
		}
		var base *snapshot
		if h := t.hist[k]; len(h) > 0 {
			i := 0 // the newest reading at or before now-window, else the oldest
			for i+1 < len(h) && !h[i+1].at.After(now.Add(-t.window)) {
				i++
			}
			base = &h[i]
		}
		out[k] = stats(now, c, base)
	}
	return out
}

func stats(now time.Time, cur *Reading, base *snapshot) WindowStats {
	var ws WindowStats
	for _, c := range cur.Codes {
		ws.Total += c
	}
	if base == nil {
		return ws
	}
	b := base.r
	ws.Span = now.Sub(base.at)
	for c := range numCodes {
		d := cur.Codes[c] - min(b.Codes[c], cur.Codes[c])
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
	if len(cur.Buckets) == len(b.Buckets) {
		delta := make([]uint64, len(cur.Buckets))
		for i := range delta {
			delta[i] = cur.Buckets[i] - min(b.Buckets[i], cur.Buckets[i])
		}
		n := cur.Count - min(b.Count, cur.Count)
		ws.P50 = quantile(0.5, cur.Bounds, delta, n)
		ws.P99 = quantile(0.99, cur.Bounds, delta, n)
	}
	return ws
}

// quantile estimates the q-quantile from cumulative bucket counts cum over
// upper bounds (n = all observations, including those past the last
// bound), interpolating linearly inside a bucket like Prometheus'
// histogram_quantile. Past the last bound it returns the last bound.
func quantile(q float64, bounds []float64, cum []uint64, n uint64) float64 {
	if n == 0 || len(bounds) == 0 {
		return 0
	}
	rank := q * float64(n)
	var prevCount uint64
	lower := 0.0
	for i, c := range cum {
		if float64(c) >= rank {
			inBucket := c - prevCount
			if inBucket == 0 {
				return bounds[i]
			}
			return lower + (bounds[i]-lower)*(rank-float64(prevCount))/float64(inBucket)
		}
		prevCount, lower = c, bounds[i]
	}
	return bounds[len(bounds)-1]
}
