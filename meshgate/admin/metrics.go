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
	m := &Metrics{
		Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Name: "requests_total", Help: "Requests by listener, route, upstream and gRPC code, every listener kind and upstream protocol.",
		}, []string{"listener", "route", "upstream", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "meshgate", Name: "request_duration_seconds", Help: "Request latency by listener, route and upstream.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5},
		}, []string{"listener", "route", "upstream"}),
		UpstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Name: "upstream_requests_total", Help: "Calls sent to upstream endpoints by upstream, endpoint and gRPC code.",
		}, []string{"upstream", "endpoint", "code"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshgate", Name: "requests_in_flight", Help: "Requests in flight per listener.",
		}, []string{"listener"}),
		DownstreamConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshgate", Name: "downstream_connections", Help: "Open downstream connections per listener.",
		}, []string{"listener"}),
		UpstreamConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshgate", Name: "upstream_connections", Help: "Upstream connections per upstream and kind.",
		}, []string{"upstream", "kind"}),
		Malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Name: "malformed_frames_total", Help: "Connections closed for a malformed frame, by listener and reason.",
		}, []string{"listener", "reason"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Name: "rejected_requests_total", Help: "Requests answered locally with an error, by listener and reason.",
		}, []string{"listener", "reason"}),
		Heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Name: "heartbeats_total", Help: "Heartbeats answered locally per listener.",
		}, []string{"listener"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshgate", Name: "config_reloads_total", Help: "Configuration reloads by outcome.",
		}, []string{"outcome"}),
	}
	r.MustRegister(m.Requests, m.Latency, m.UpstreamRequests, m.InFlight, m.DownstreamConns,
		m.UpstreamConns, m.Malformed, m.Rejected, m.Heartbeats, m.Reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
