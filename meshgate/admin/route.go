package admin

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// numCodes is the number of gRPC codes (OK … Unauthenticated).
const numCodes = 17

// RouteMetrics are one route's series of meshgate_requests_total and
// meshgate_request_duration_seconds, the same for every listener kind and
// upstream protocol: labels listener, route, upstream (and code, the gRPC
// code name: the one code vocabulary; a private reply's result maps to its
// code by docs/protocol.md's table). Children are resolved once per route
// and code, so observing allocates nothing. A nil *RouteMetrics is a no-op.
type RouteMetrics struct {
	m                         *Metrics
	listener, route, upstream string
	latency                   prometheus.Observer
	codes                     [numCodes]atomic.Pointer[prometheus.Counter]
}

// Route returns the metrics of one route. route names it within its
// listener: the cmd (with its uin range, if any) on a private listener,
// the configured method on a gRPC listener. A nil *Metrics gives nil.
func (m *Metrics) Route(listener, route, upstream string) *RouteMetrics {
	if m == nil {
		return nil
	}
	return &RouteMetrics{m: m, listener: listener, route: route, upstream: upstream,
		latency: m.Latency.WithLabelValues(listener, route, upstream)}
}

// Observe records one finished request.
func (rm *RouteMetrics) Observe(c codes.Code, d time.Duration) {
	if rm == nil {
		return
	}
	rm.counter(c).Inc()
	rm.latency.Observe(d.Seconds())
}

func (rm *RouteMetrics) counter(c codes.Code) prometheus.Counter {
	if c >= numCodes {
		c = codes.Unknown
	}
	if p := rm.codes[c].Load(); p != nil {
		return *p
	}
	ctr := rm.m.Requests.WithLabelValues(rm.listener, rm.route, rm.upstream, c.String())
	rm.codes[c].Store(&ctr)
	return ctr
}

// Unrouted counts a request that matched no route (route "unmatched", no
// upstream), answered locally with code c.
func (m *Metrics) Unrouted(listener string, c codes.Code) {
	if m == nil {
		return
	}
	m.Requests.WithLabelValues(listener, "unmatched", "", c.String()).Inc()
}
