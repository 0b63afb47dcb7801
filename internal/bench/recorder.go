package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: 1 µs resolution, up to 60 s, 3 significant digits.
const (
	histMinUs = 1
	histMaxUs = 60_000_000
	histSig   = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinUs, histMaxUs, histSig)
}

// Recorder collects the latencies of one measurement. It is safe for
// concurrent use: completions arrive on many goroutines.
type Recorder struct {
	// From is the end of the warm-up: completions of requests intended
	// before it are ignored.
	From time.Time

	mu       sync.Mutex
	intended *hdrhistogram.Histogram // from intended send time (CO-free)
	actual   *hdrhistogram.Histogram // from actual send time
	errs     int64
	warm     int64 // completions discarded as warm-up
	errKinds map[string]int64
	pending  int64 // begun and not yet recorded
	closed   bool  // completions after Close are ignored
}

// NewRecorder returns a Recorder that ignores requests intended before from.
func NewRecorder(from time.Time) *Recorder {
	return &Recorder{From: from, intended: newHist(), actual: newHist(), errKinds: map[string]int64{}}
}

func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	if us < histMinUs {
		us = histMinUs
	}
	if us > histMaxUs {
		us = histMaxUs
	}
	return us
}

// Begin notes one request sent; Record ends it.
func (r *Recorder) Begin() {
	r.mu.Lock()
	r.pending++
	r.mu.Unlock()
}

// Pending returns how many begun requests are not yet recorded.
func (r *Recorder) Pending() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending
}

// Close stops recording and returns how many begun requests never
// completed. Completions after Close are ignored.
func (r *Recorder) Close() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return r.pending
}

// Record records one completed request.
func (r *Recorder) Record(intended, sent, done time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.pending--
	if intended.Before(r.From) {
		r.warm++
		return
	}
	if err != nil {
		r.errs++
		if len(r.errKinds) < 16 {
			r.errKinds[err.Error()]++
		}
		return
	}
	_ = r.intended.RecordValue(micros(done.Sub(intended)))
	_ = r.actual.RecordValue(micros(done.Sub(sent)))
}

// AddErrors counts n requests that never completed (e.g. still in flight
// when the drain timeout expired).
func (r *Recorder) AddErrors(n int64, why string) {
	if n <= 0 {
		return
	}
	r.mu.Lock()
	r.errs += n
	r.errKinds[why] += n
	r.mu.Unlock()
}

// Snapshot returns the summaries (intended, actual), the success and
// error counts.
func (r *Recorder) Snapshot() (intended, actual Latency, ok, errs int64, kinds map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kinds = make(map[string]int64, len(r.errKinds))
	for k, v := range r.errKinds {
		kinds[k] = v
	}
	return Summarize(r.intended), Summarize(r.actual), r.intended.TotalCount(), r.errs, kinds
}

// Latency summarises one distribution, in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Avg   float64 `json:"avg_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P95   float64 `json:"p95_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p99_9_us"`
	Max   float64 `json:"max_us"`
}

// Summarize reads the percentiles out of h (values in µs).
func Summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	v := h.ValueAtPercentiles([]float64{50, 90, 95, 99, 99.9})
	return Latency{
		Count: h.TotalCount(),
		Avg:   h.Mean(),
		P50:   float64(v[50]),
		P90:   float64(v[90]),
		P95:   float64(v[95]),
		P99:   float64(v[99]),
		P999:  float64(v[99.9]),
		Max:   float64(h.Max()),
	}
}

// Metrics lists the summary fields in table order with their names.
func (l Latency) Metrics() []float64 {
	return []float64{l.Avg, l.P50, l.P90, l.P95, l.P99, l.P999, l.Max}
}

// MetricNames names the values of Metrics.
var MetricNames = []string{"avg", "p50", "p90", "p95", "p99", "p99.9", "max"}

func latencyFrom(m []float64, count int64) Latency {
	return Latency{Count: count, Avg: m[0], P50: m[1], P90: m[2], P95: m[3], P99: m[4], P999: m[5], Max: m[6]}
}
