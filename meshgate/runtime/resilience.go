package runtime

import (
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// resilienceRT holds what package resilience needs across generations:
// the metrics every Guard reports to and the current service switches
// (admin API at /switches).
type resilienceRT struct {
	metrics  *resilience.Metrics
	switches atomic.Pointer[resilience.Switches]
}

func (r *resilienceRT) init(reg *prometheus.Registry) error {
	m, err := resilience.NewMetrics(reg)
	r.metrics = m
	return err
}

// guardOptions are the options of upstream name's Guard.
func (r *resilienceRT) guardOptions(name string, log *slog.Logger) []resilience.Option {
	return []resilience.Option{resilience.WithObserver(r.metrics.For(name)),
		resilience.WithLogger(log.With("component", "resilience"))}
}

// stageSwitches builds the switches of cfg, keeping the admin overrides of
// the current ones, and makes them current (the admin API acts on them).
func (r *resilienceRT) stageSwitches(cfg *config.Config) *resilience.Switches {
	sw := resilience.NewSwitches(cfg.Switches, r.switches.Load())
	r.switches.Store(sw)
	return sw
}

func (r *resilienceRT) handler() http.Handler {
	return resilience.Handler(r.switches.Load)
}
