package upstream

import (
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/promreg"
)

// metrics are shared by every pool registered on one Registerer, so a pool
// rebuilt on hot reload (same upstream name) adds to the same series.
// Gauges move by deltas for the same reason.
type metrics struct {
	endpoints, healthy, conns                             *prometheus.GaugeVec
	dialErrors, reconnects, ejections, late, unknown, noH *prometheus.CounterVec
	connLost                                              *prometheus.CounterVec // upstream, reason
}

type poolMetrics struct {
	endpoints, healthy, conns                                   prometheus.Gauge
	dialErrors, reconnects, ejections, late, unknown, noHealthy prometheus.Counter
	connLost                                                    *prometheus.CounterVec // reason
}

// Why a private upstream connection was lost
// (meshgate_private_upstream_connections_lost_total{reason}).
const (
	LostMalformed    = "malformed"     // the backend sent bytes that are not a frame (or a frame over the limit)
	LostWriteTimeout = "write_timeout" // the backend took no bytes for the write timeout
	LostLiveness     = "liveness"      // nothing read for the liveness timeout
	LostClosed       = "closed"        // the backend closed (or reset) the connection, possibly mid-frame
	LostError        = "error"         // any other socket error
)

// lost counts a connection that closed with err (privconn.Conn.Err).
func (m *poolMetrics) lost(err error) {
	reason := LostError
	switch {
	case errors.Is(err, codec.ErrMalformed):
		reason = LostMalformed
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = LostWriteTimeout
	case errors.Is(err, privconn.ErrLivenessTimeout):
		reason = LostLiveness
	case errors.Is(err, privconn.ErrPeerClosed), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		reason = LostClosed
	}
	m.connLost.WithLabelValues(reason).Inc()
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
		connLost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_private_upstream_connections_lost_total",
			Help: "Connections to private upstream endpoints lost, by reason (malformed, write_timeout, liveness, closed, error)."},
			[]string{"upstream", "reason"}),
	}
	if err := promreg.AdoptAll(reg, &m.endpoints, &m.healthy, &m.conns); err != nil {
		return nil, err
	}
	if err := promreg.AdoptAll(reg, &m.dialErrors, &m.reconnects, &m.ejections, &m.late, &m.unknown, &m.noH, &m.connLost); err != nil {
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
		connLost:  m.connLost.MustCurryWith(prometheus.Labels{"upstream": name}),
	}
}
