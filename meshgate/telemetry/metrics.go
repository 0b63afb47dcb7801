package telemetry

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	otelmetric "go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	grpcotel "google.golang.org/grpc/stats/opentelemetry"
)

// ErrMetrics wraps failures to set up the gRPC metrics.
var ErrMetrics = errors.New("telemetry: grpc metrics")

// GRPCMetrics is grpc-go's standard OpenTelemetry instrumentation
// (google.golang.org/grpc/stats/opentelemetry: grpc.server.call.duration,
// grpc.server.call.sent/rcvd_total_compressed_message_size,
// grpc.client.attempt.*, grpc.client.call.duration, ...) read by the OTel
// Prometheus exporter into a client_golang registry, so the series appear on
// /metrics next to MeshGate's own (grpc_server_call_duration_seconds, ...).
//
// grpc-go labels server metrics of methods served by the unknown-service
// handler (every bridged method) with grpc_method="other"; client metrics
// carry the method because the bridge sets grpc.StaticMethod on its calls
// (routes are configured, so the label set is bounded).
type GRPCMetrics struct {
	mp *sdkmetric.MeterProvider
}

// NewGRPCMetrics registers the exporter on reg.
func NewGRPCMetrics(reg prometheus.Registerer) (*GRPCMetrics, error) {
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMetrics, err)
	}
	return &GRPCMetrics{mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))}, nil
}

func (g *GRPCMetrics) options() grpcotel.Options {
	return grpcotel.Options{MetricsOptions: grpcotel.MetricsOptions{MeterProvider: g.mp}}
}

// ServerOptions instrument a grpc.Server (none for a nil g).
func (g *GRPCMetrics) ServerOptions() []grpc.ServerOption {
	if g == nil {
		return nil
	}
	return []grpc.ServerOption{grpcotel.ServerOption(g.options())}
}

// DialOptions instrument a grpc.ClientConn (none for a nil g).
func (g *GRPCMetrics) DialOptions() []grpc.DialOption {
	if g == nil {
		return nil
	}
	return []grpc.DialOption{grpcotel.DialOption(g.options())}
}

// MeterProvider is the provider grpc-go's instrumentation records on (nil
// for a nil g): the direct gRPC transport records its client metrics there
// too (meshgate/grpcdirect.Metrics).
func (g *GRPCMetrics) MeterProvider() otelmetric.MeterProvider {
	if g == nil {
		return nil
	}
	return g.mp
}

// Shutdown stops the meter provider.
func (g *GRPCMetrics) Shutdown(ctx context.Context) error {
	if g == nil {
		return nil
	}
	return g.mp.Shutdown(ctx)
}
