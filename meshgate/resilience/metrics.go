package resilience

import (
	"fmt"
	"time"

	"github.com/meshgate/meshgate/meshgate/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus series of every Guard on one Registerer
// (shared across config generations: a rebuilt Guard adds to the same
// series, and gauges move by deltas).
type Metrics struct {
	ejections *prometheus.CounterVec // upstream, endpoint, reason
	ejected   *prometheus.GaugeVec   // upstream
	rejected  *prometheus.CounterVec // upstream, reason
	expired   *prometheus.CounterVec // upstream, stage
	retries   *prometheus.CounterVec // upstream, event
	limit     *prometheus.GaugeVec   // upstream
}

var metricsReg promreg.PerRegisterer[*Metrics]

// NewMetrics registers (once per Registerer) and returns the metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	return metricsReg.Get(reg, func() (*Metrics, error) { return newMetrics(reg) })
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_upstream_ejections_total",
			Help: "Endpoints ejected by outlier detection."}, []string{"upstream", "endpoint", "reason"}),
		ejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshgate_upstream_ejected_endpoints",
			Help: "Endpoints ejected by outlier detection now."}, []string{"upstream"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_upstream_rejected_total",
			Help: "Requests refused with RESOURCE_EXHAUSTED before reaching an endpoint, by reason."}, []string{"upstream", "reason"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_upstream_deadline_dropped_total",
			Help: "Requests not sent upstream because their deadline passed (or min_remaining was not left), by stage."}, []string{"upstream", "stage"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_upstream_retries_total",
			Help: "Retries and hedges sent (event=retry|hedge) or denied (budget_exhausted|deadline|no_endpoint)."}, []string{"upstream", "event"}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshgate_upstream_concurrency_limit",
			Help: "Current adaptive concurrency limit."}, []string{"upstream"}),
	}
	if err := promreg.AdoptAll(reg, &m.ejections, &m.rejected, &m.expired, &m.retries); err != nil {
		return nil, fmt.Errorf("resilience metrics: %w", err)
	}
	if err := promreg.AdoptAll(reg, &m.ejected, &m.limit); err != nil {
		return nil, fmt.Errorf("resilience metrics: %w", err)
	}
	return m, nil
}

// For returns the Observer of one upstream, with every series resolved
// once (no label lookups on the request path).
func (m *Metrics) For(upstream string) Observer {
	o := &promObserver{m: m, upstream: upstream, ejected: m.ejected.WithLabelValues(upstream),
		limit: m.limit.WithLabelValues(upstream)}
	for i, r := range rejections {
		o.rejected[i] = m.rejected.WithLabelValues(upstream, r.Reason)
	}
	for i, n := range stageNames {
		o.expired[i] = m.expired.WithLabelValues(upstream, n)
	}
	for i, n := range retryNames {
		o.retries[i] = m.retries.WithLabelValues(upstream, n)
	}
	return o
}

type promObserver struct {
	m        *Metrics
	upstream string
	ejected  prometheus.Gauge
	limit    prometheus.Gauge
	rejected [8]prometheus.Counter
	expired  [len(stageNames)]prometheus.Counter
	retries  [len(retryNames)]prometheus.Counter
}

func (o *promObserver) Ejected(e *Endpoint, r EjectReason, _ time.Duration) {
	o.m.ejections.WithLabelValues(o.upstream, e.addr, r.String()).Inc() // rare: a lookup is fine
	o.ejected.Inc()
}

func (o *promObserver) Returned(*Endpoint) { o.ejected.Dec() }

func (o *promObserver) Rejected(r *Rejected) {
	for i, x := range rejections {
		if x == r {
			o.rejected[i].Inc()
		}
	}
}

func (o *promObserver) Expired(s Stage)        { o.expired[s].Inc() }
func (o *promObserver) Retry(ev RetryEvent)    { o.retries[ev].Inc() }
func (o *promObserver) LimitChanged(limit int) { o.limit.Set(float64(limit)) }
