// Package telemetry is MeshGate's OpenTelemetry side: a tracer provider with
// an OTLP/gRPC exporter built from the config (telemetry.tracing), the
// per-request hook both bridge directions call (one span per bridged
// request, W3C trace context taken from ext 1 / traceparent and injected on
// the other side, plus the access log line), and grpc-go's standard
// OpenTelemetry metrics bridged to Prometheus.
//
// Nothing is recorded when telemetry is not configured: the Hub holds no
// state, Start returns a nil *Call and the request paths skip everything
// (no span, no allocation); traceparent is still carried through unchanged
// by package mapping.
package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/meshgate/meshgate/meshgate/config"
)

// ErrTracing wraps failures to build the trace exporter.
var ErrTracing = errors.New("telemetry: tracing")

// ScopeName is the instrumentation scope of MeshGate's spans.
const ScopeName = "github.com/meshgate/meshgate/meshgate/telemetry"

// Tracing is a configured tracer provider.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// NewTracing builds a tracer provider exporting to c.OTLPEndpoint through a
// batch span processor. path resolves relative TLS file names. The exporter
// connects lazily: an unreachable collector does not fail start-up (spans
// are dropped and the SDK reports the error through otel.Handle).
func NewTracing(c *config.Tracing, path func(string) string) (*Tracing, error) {
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(c.OTLPEndpoint)}
	if c.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	} else {
		tc, err := clientTLS(c.TLS, path)
		if err != nil {
			return nil, err
		}
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tc)))
	}
	exp, err := otlptracegrpc.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: exporter: %w", ErrTracing, err)
	}
	name := c.ServiceName
	if name == "" {
		name = "meshgate"
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name)}
	keys := make([]string, 0, len(c.ResourceAttributes))
	for k := range c.ResourceAttributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, attribute.String(k, c.ResourceAttributes[k]))
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.Ratio()))),
	)
	return newTracing(tp), nil
}

// NewTracingProvider wraps an already built provider (tests, embedding).
func NewTracingProvider(tp *sdktrace.TracerProvider) *Tracing { return newTracing(tp) }

func newTracing(tp *sdktrace.TracerProvider) *Tracing {
	return &Tracing{tp: tp, tracer: tp.Tracer(ScopeName), prop: propagation.TraceContext{}}
}

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

func clientTLS(t *config.TLS, path func(string) string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	pem, err := os.ReadFile(path(t.CAFile))
	if err != nil {
		return nil, fmt.Errorf("%w: tls.ca_file: %w", ErrTracing, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: tls.ca_file: no certificate found", ErrTracing)
	}
	tc.RootCAs = pool
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(path(t.CertFile), path(t.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("%w: tls.cert_file: %w", ErrTracing, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
