package grpcpool

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/meshgate/promreg"
)

// lostMetric is meshgate_grpc_upstream_connections_lost_total{upstream,
// reason}: the direct transport's connections lost, by
// grpcdirect.LostReason (the twin of the private pools'
// meshgate_private_upstream_connections_lost_total). One per Registerer,
// shared by the pools made on it (a pool rebuilt on reload adds to the
// same series).
var lostMetric promreg.PerRegisterer[*prometheus.CounterVec]

func lostCounter(reg prometheus.Registerer, upstream string) (*prometheus.CounterVec, error) {
	vec, err := lostMetric.Get(reg, func() (*prometheus.CounterVec, error) {
		return promreg.Adopt(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_grpc_upstream_connections_lost_total",
			Help: "Direct-transport connections to gRPC upstream endpoints lost, by reason (protocol, goaway, write_timeout, liveness, closed, error).",
		}, []string{"upstream", "reason"}))
	})
	if err != nil {
		return nil, err
	}
	return vec.MustCurryWith(prometheus.Labels{"upstream": upstream}), nil
}
