package split

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// LatencyBuckets are the backend latency histogram's upper bounds, seconds
// (the same as meshgate_request_duration_seconds).
var LatencyBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5}

const numCodes = 17 // gRPC codes OK..UNAUTHENTICATED

// Metrics are the per-route, per-backend collectors:
//
//	meshgate_backend_requests_total{route,backend,code}       every request a route sent to a backend, by gRPC code
//	meshgate_backend_request_duration_seconds{route,backend}  its latency
//	meshgate_split_share{route,backend}                       configured share of users (by uin_bucket) or weight
//
// Private results count under their gRPC code (one table, PROTOCOL.md);
// application results (≥ 17) under UNKNOWN. Route tables resolve a
// *BackendStats once per (route, backend), so recording is allocation-free.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	share    *prometheus.GaugeVec

	mu     sync.Mutex
	stats  map[[2]string]*BackendStats
	shared map[[2]string]bool // pairs with a share series
}

// NewMetrics creates the collectors and registers them on reg (nil = not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Name: "backend_requests_total",
			Help: "Requests a route sent to a backend (split side), by gRPC code.",
		}, []string{"route", "backend", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "meshgate", Name: "backend_request_duration_seconds",
			Help:    "Latency of requests a route sent to a backend (split side).",
			Buckets: LatencyBuckets,
		}, []string{"route", "backend"}),
		share: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshgate", Name: "split_share",
			Help: "Configured share (0..1) of a route's users (by uin_bucket) or weight (by weight) per backend; -1 by uin_range.",
		}, []string{"route", "backend"}),
		stats: map[[2]string]*BackendStats{},
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.share)
	}
	return m
}

// BackendStats records one (route, backend) pair's outcomes.
type BackendStats struct {
	Route, Backend string
	codes          [numCodes]prometheus.Counter
	latency        prometheus.Observer
	hist           prometheus.Histogram
}

// Backend returns the (route, backend) recorder, creating it on first use;
// the same pointer is returned across reloads.
func (m *Metrics) Backend(route, backend string) *BackendStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := [2]string{route, backend}
	if s := m.stats[key]; s != nil {
		return s
	}
	s := &BackendStats{Route: route, Backend: backend}
	for c := range numCodes {
		s.codes[c] = m.requests.WithLabelValues(route, backend, codes.Code(c).String())
	}
	s.hist = m.latency.WithLabelValues(route, backend).(prometheus.Histogram)
	s.latency = s.hist
	m.stats[key] = s
	return s
}

// SetShares publishes the configured shares of rules (the routes in
// service) and drops the series of (route, backend) pairs no longer split.
func (m *Metrics) SetShares(rules []*Rule) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := map[[2]string]bool{}
	for _, r := range rules {
		for k, sh := range r.Share() {
			key := [2]string{r.Route(), r.backends[k].Upstream}
			next[key] = true
			m.share.WithLabelValues(key[0], key[1]).Set(sh)
		}
	}
	for key := range m.shared {
		if !next[key] {
			m.share.DeleteLabelValues(key[0], key[1])
		}
	}
	m.shared = next
}

// All returns every recorder created so far.
func (m *Metrics) All() []*BackendStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*BackendStats, 0, len(m.stats))
	for _, s := range m.stats {
		out = append(out, s)
	}
	return out
}

// Observe records one request's outcome. Allocation-free.
func (s *BackendStats) Observe(code codes.Code, d time.Duration) {
	if uint32(code) >= numCodes {
		code = codes.Unknown
	}
	s.codes[code].Inc()
	s.latency.Observe(d.Seconds())
}
