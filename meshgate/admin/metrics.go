package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are MeshGate's Prometheus collectors, registered on their own
// registry (served on /metrics). Hot paths resolve label sets once (per
// route, per listener) and keep the child collectors.
type Metrics struct {
	Registry *prometheus.Registry
	// RequestGatherer gathers Requests and Latency alone (they are also on
	// Registry): the migration controller samples them every second, and
	// gathering Registry would collect the Go and process collectors (a
	// runtime/metrics read and /proc reads) and every other family each
	// time — about 200 KB allocated per second on an idle process, a GC
	// every 10 s and the read-only pages that work touches back in RSS.
	RequestGatherer prometheus.Gatherer

	// Requests counts requests of every listener kind and upstream
	// protocol by listener, route, upstream and gRPC code name
	// (meshgate_requests_total; see RouteMetrics).
	Requests *prometheus.CounterVec
	// Latency observes request latency in seconds by listener, route and
	// upstream (meshgate_request_duration_seconds).
	Latency *prometheus.HistogramVec
	// UpstreamRequests counts calls an upstream pool sent, by upstream,
	// endpoint and gRPC code (meshgate_upstream_requests_total; private
	// pools, which pick the endpoint themselves).
	UpstreamRequests *prometheus.CounterVec
	// InFlight is the number of requests in flight per listener.
	InFlight *prometheus.GaugeVec
	// DownstreamConns is the number of open downstream connections per
	// listener.
	DownstreamConns *prometheus.GaugeVec
	// UpstreamConns is the number of upstream connections per upstream and
	// kind ("clientconn" = shared grpc.ClientConn, "transport" = HTTP/2 or
	// TCP connections to endpoints).
	UpstreamConns *prometheus.GaugeVec
	// Malformed counts connections closed for a malformed frame, by
	// listener and reason.
	Malformed *prometheus.CounterVec
	// Rejected counts requests answered locally with an error, by listener
	// and reason (unknown_cmd, duplicate_seq, auth, ...).
	Rejected *prometheus.CounterVec
	// Heartbeats counts heartbeats answered locally per listener.
	Heartbeats *prometheus.CounterVec
	// Reloads counts configuration reloads by outcome (ok, rejected).
	Reloads *prometheus.CounterVec
}

// NewMetrics creates the collectors on a fresh registry (with Go and process
// collectors).
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	// Every series is meshgate_<name>, by the labels given.
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "meshgate", Name: name, Help: help}, labels)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "meshgate", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Registry: r,
		Requests: counter("requests_total", "Requests by listener, route, upstream and gRPC code, every listener kind and upstream protocol.", "listener", "route", "upstream", "code"),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "meshgate", Name: "request_duration_seconds", Help: "Request latency by listener, route and upstream.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5},
		}, []string{"listener", "route", "upstream"}),
		UpstreamRequests: counter("upstream_requests_total", "Calls sent to upstream endpoints by upstream, endpoint and gRPC code.", "upstream", "endpoint", "code"),
		InFlight:         gauge("requests_in_flight", "Requests in flight per listener.", "listener"),
		DownstreamConns:  gauge("downstream_connections", "Open downstream connections per listener.", "listener"),
		UpstreamConns:    gauge("upstream_connections", "Upstream connections per upstream and kind.", "upstream", "kind"),
		Malformed:        counter("malformed_frames_total", "Connections closed for a malformed frame, by listener and reason.", "listener", "reason"),
		Rejected:         counter("rejected_requests_total", "Requests answered locally with an error, by listener and reason.", "listener", "reason"),
		Heartbeats:       counter("heartbeats_total", "Heartbeats answered locally per listener.", "listener"),
		Reloads:          counter("config_reloads_total", "Configuration reloads by outcome.", "outcome"),
	}
	r.MustRegister(m.Requests, m.Latency, m.UpstreamRequests, m.InFlight, m.DownstreamConns,
		m.UpstreamConns, m.Malformed, m.Rejected, m.Heartbeats, m.Reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rg := prometheus.NewRegistry()
	rg.MustRegister(m.Requests, m.Latency)
	m.RequestGatherer = rg
	return m
}
