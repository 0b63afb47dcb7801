package outbound

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// metrics: meshgate_outbound_requests_total{listener,method,code} and
// meshgate_outbound_request_duration_seconds{listener,method}. "method" is
// the configured route method (bounded cardinality); calls matching no
// route count under method="unmatched".
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_outbound_requests_total",
			Help: "gRPC→private calls by listener, route method and gRPC code.",
		}, []string{"listener", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshgate_outbound_request_duration_seconds",
			Help:    "gRPC→private call latency by listener and route method.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5},
		}, []string{"listener", "method"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.requests = are.ExistingCollector.(*prometheus.CounterVec)
	}
	if err := reg.Register(m.latency); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.latency = are.ExistingCollector.(*prometheus.HistogramVec)
	}
	return m, nil
}

const numCodes = 17

// routeMetrics caches one route's children; counters per code are resolved
// on first use.
type routeMetrics struct {
	m                *metrics
	listener, method string
	latency          prometheus.Observer
	codes            [numCodes]atomic.Pointer[prometheus.Counter]
}

func (m *metrics) forRoute(listener, method string) *routeMetrics {
	return &routeMetrics{m: m, listener: listener, method: method, latency: m.latency.WithLabelValues(listener, method)}
}

func (rm *routeMetrics) counter(c codes.Code) prometheus.Counter {
	if c >= numCodes {
		c = codes.Unknown
	}
	if p := rm.codes[c].Load(); p != nil {
		return *p
	}
	ctr := rm.m.requests.WithLabelValues(rm.listener, rm.method, c.String())
	rm.codes[c].Store(&ctr)
	return ctr
}

func (rm *routeMetrics) observe(c codes.Code, d time.Duration) {
	rm.counter(c).Inc()
	rm.latency.Observe(d.Seconds())
}

func (m *metrics) unmatched(listener string, c codes.Code) {
	m.requests.WithLabelValues(listener, "unmatched", c.String()).Inc()
}
