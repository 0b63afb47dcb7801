package upstream

import (
	"github.com/meshgate/meshgate/meshgate/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every pool registered on one Registerer, so a pool
// rebuilt on hot reload (same upstream name) adds to the same series.
// Gauges move by deltas for the same reason.
type metrics struct {
	endpoints, healthy, conns                             *prometheus.GaugeVec
	dialErrors, reconnects, ejections, late, unknown, noH *prometheus.CounterVec
}

type poolMetrics struct {
	endpoints, healthy, conns                                   prometheus.Gauge
	dialErrors, reconnects, ejections, late, unknown, noHealthy prometheus.Counter
}

var metricsReg promreg.PerRegisterer[*metrics]

func metricsFor(reg prometheus.Registerer) (*metrics, error) {
	return metricsReg.Get(reg, func() (*metrics, error) { return newMetrics(reg) })
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	lbl := []string{"upstream"}
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshgate_private_upstream_" + name, Help: help}, lbl)
	}
	c := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_private_upstream_" + name, Help: help}, lbl)
	}
	m := &metrics{
		endpoints:  g("endpoints", "Configured endpoints of private upstreams."),
		healthy:    g("healthy_endpoints", "Endpoints with at least one live connection."),
		conns:      g("connections", "Live multiplexed connections."),
		dialErrors: c("dial_errors_total", "Failed connection attempts."),
		reconnects: c("reconnects_total", "Connections lost and redialed."),
		ejections:  c("ejections_total", "Endpoints ejected (last connection lost)."),
		late:       c("late_replies_total", "Replies that arrived after their request was abandoned (dropped)."),
		unknown:    c("unknown_seq_replies_total", "Replies matching no request (dropped)."),
		noH:        c("no_healthy_total", "Requests failed because no endpoint was healthy."),
	}
	if err := promreg.AdoptAll(reg, &m.endpoints, &m.healthy, &m.conns); err != nil {
		return nil, err
	}
	if err := promreg.AdoptAll(reg, &m.dialErrors, &m.reconnects, &m.ejections, &m.late, &m.unknown, &m.noH); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) forPool(name string) *poolMetrics {
	return &poolMetrics{
		endpoints: m.endpoints.WithLabelValues(name), healthy: m.healthy.WithLabelValues(name),
		conns: m.conns.WithLabelValues(name), dialErrors: m.dialErrors.WithLabelValues(name),
		reconnects: m.reconnects.WithLabelValues(name), ejections: m.ejections.WithLabelValues(name),
		late: m.late.WithLabelValues(name), unknown: m.unknown.WithLabelValues(name),
		noHealthy: m.noH.WithLabelValues(name),
	}
}
