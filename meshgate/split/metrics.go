package split

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

const numCodes = 17 // gRPC codes OK..UNAUTHENTICATED

// Metrics are the split's own collector:
//
//	meshgate_split_share{route,backend}  configured share of users (by uin_bucket) or weight
//
// Requests and latency per backend are not recorded here: every side of a
// split is a route of its own in meshgate_requests_total and
// meshgate_request_duration_seconds (its upstream label names the
// backend), and the Tracker reads them from there (GatherSource).
type Metrics struct {
	share *prometheus.GaugeVec

	mu     sync.Mutex
	shared map[[2]string]bool // pairs with a share series
}

// NewMetrics creates the collector and registers it on reg (nil = not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		share: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshgate", Name: "split_share",
			Help: "Configured share (0..1) of a route's users (by uin_bucket) or weight (by weight) per backend; -1 by uin_range.",
		}, []string{"route", "backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.share)
	}
	return m
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
