package runtime

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/meshgate/meshgate/meshgate/accesslog"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/telemetry"
)

// telStaged is the telemetry part of a staged (re)load: what to install at
// commit, or nothing when the telemetry config did not change.
type telStaged struct {
	changed bool
	tr      *telemetry.Tracing
	alog    *accesslog.Logger
}

// stageTelemetry builds the tracer and access log cfg asks for when they
// differ from the running config's.
func (r *Runtime) stageTelemetry(old, cfg *config.Config) (*telStaged, error) {
	if old != nil && grpcMetricsOn(old) != grpcMetricsOn(cfg) {
		r.log.Warn("telemetry.grpc_metrics changes need a restart; keeping", "grpc_metrics", grpcMetricsOn(old))
	}
	if old != nil && reflect.DeepEqual(tracingOf(old), tracingOf(cfg)) && reflect.DeepEqual(old.AccessLog, cfg.AccessLog) {
		return &telStaged{}, nil
	}
	ts := &telStaged{changed: true}
	if tc := tracingOf(cfg); tc != nil {
		tr, err := telemetry.NewTracing(tc, cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("telemetry.tracing: %w", err)
		}
		ts.tr = tr
	}
	if a := cfg.AccessLog; a != nil {
		p := a.Path
		if p != "stdout" && p != "stderr" && p != "" {
			p = cfg.Path(p)
		}
		al, err := accesslog.New(a, p)
		if err != nil {
			ts.abort()
			return nil, fmt.Errorf("access_log.path: %w", err)
		}
		ts.alog = al
	}
	return ts, nil
}

func (ts *telStaged) abort() {
	if ts == nil {
		return
	}
	_ = ts.tr.Shutdown(context.Background())
	_ = ts.alog.Close()
}

// commitTelemetry installs staged telemetry; the replaced tracer is flushed
// and the replaced log closed after the drain timeout (requests in flight
// may still record on them).
func (r *Runtime) commitTelemetry(ts *telStaged, drain time.Duration) {
	if ts == nil || !ts.changed {
		return
	}
	oldTr, oldLog := r.tel.Set(ts.tr, ts.alog)
	if oldTr == nil && oldLog == nil {
		return
	}
	r.tel.Retire(drain, func() { closeTelemetry(oldTr, oldLog) })
}

// stopTelemetry flushes and closes whatever is installed.
func (r *Runtime) stopTelemetry() {
	closeTelemetry(r.tel.Set(nil, nil))
	r.tel.CloseRetired()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.gm.Shutdown(ctx)
}

// startGRPCMetrics sets up grpc-go's OpenTelemetry metrics when the
// initial config asks for them (telemetry.grpc_metrics).
func (r *Runtime) startGRPCMetrics(cfg *config.Config) error {
	if !grpcMetricsOn(cfg) {
		return nil
	}
	gm, err := telemetry.NewGRPCMetrics(r.metrics.Registry)
	if err != nil {
		return fmt.Errorf("%w: telemetry.grpc_metrics: %w", ErrRejected, err)
	}
	r.gm = gm
	return nil
}

func grpcMetricsOn(c *config.Config) bool { return c.Telemetry != nil && c.Telemetry.GRPCMetrics }

func closeTelemetry(tr *telemetry.Tracing, al *accesslog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = tr.Shutdown(ctx)
	_ = al.Close()
}

func tracingOf(c *config.Config) *config.Tracing {
	if c.Telemetry == nil {
		return nil
	}
	return c.Telemetry.Tracing
}

// Telemetry returns the runtime's telemetry hub (tests, embedding).
func (r *Runtime) Telemetry() *telemetry.Hub { return &r.tel }
