package grpcdirect

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelmetric "go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"

	"github.com/meshgate/meshgate/meshgate/grpcmeter"
)

// Metrics records, for calls over the direct transport, the per-call
// client instruments of grpc-go's OpenTelemetry instrumentation
// (google.golang.org/grpc/stats/opentelemetry): grpc.client.attempt.started,
// grpc.client.attempt.duration,
// grpc.client.attempt.sent_total_compressed_message_size,
// grpc.client.attempt.rcvd_total_compressed_message_size and
// grpc.client.call.duration, with the same meter (scope "grpc-go", grpc-go's
// version), names, units, descriptions, bucket boundaries and attributes
// (grpc.method, grpc.target, grpc.status). Created on the MeterProvider
// grpc-go's ClientConns use, the instruments are the same instruments: a
// direct call and a grpc-go call of one method, target and status land in
// the same series.
//
// grpc-go records them from its stats handler and interceptors, which only
// see calls made through a grpc.ClientConn; this re-implements the
// recording, not the instruments' definitions, which are grpc-go's.
//
// Attribute sets are built once per method and status (a route's methods
// are bounded by the config), so recording allocates only what the OTel
// SDK itself does. A nil *Metrics records nothing.
type Metrics struct {
	target string

	attemptStarted  otelmetric.Int64Counter
	attemptDuration otelmetric.Float64Histogram
	attemptSent     otelmetric.Int64Histogram
	attemptRcvd     otelmetric.Int64Histogram
	callDuration    otelmetric.Float64Histogram

	methods sync.Map // method label → *methodAttrs
}

// NewMetrics creates the instruments on mp for calls to target (the
// grpc.target attribute: what grpc-go's ClientConn.CanonicalTarget of the
// same upstream returns). A nil mp gives a nil *Metrics.
func NewMetrics(mp otelmetric.MeterProvider, target string) (*Metrics, error) {
	if mp == nil {
		return nil, nil
	}
	meter := grpcmeter.Meter(mp)
	m := &Metrics{target: target}
	var err error
	if m.attemptStarted, err = meter.Int64Counter("grpc.client.attempt.started",
		otelmetric.WithUnit("{attempt}"), otelmetric.WithDescription("Number of client call attempts started.")); err != nil {
		return nil, fmt.Errorf("grpcdirect: metrics: %w", err)
	}
	if m.attemptDuration, err = meter.Float64Histogram("grpc.client.attempt.duration",
		otelmetric.WithUnit("s"), otelmetric.WithDescription("End-to-end time taken to complete a client call attempt."),
		grpcmeter.Latency); err != nil {
		return nil, fmt.Errorf("grpcdirect: metrics: %w", err)
	}
	if m.attemptSent, err = meter.Int64Histogram("grpc.client.attempt.sent_total_compressed_message_size",
		otelmetric.WithUnit("By"), otelmetric.WithDescription("Compressed message bytes sent per client call attempt."),
		grpcmeter.Size); err != nil {
		return nil, fmt.Errorf("grpcdirect: metrics: %w", err)
	}
	if m.attemptRcvd, err = meter.Int64Histogram("grpc.client.attempt.rcvd_total_compressed_message_size",
		otelmetric.WithUnit("By"), otelmetric.WithDescription("Compressed message bytes received per call attempt."),
		grpcmeter.Size); err != nil {
		return nil, fmt.Errorf("grpcdirect: metrics: %w", err)
	}
	if m.callDuration, err = meter.Float64Histogram("grpc.client.call.duration",
		otelmetric.WithUnit("s"), otelmetric.WithDescription("Time taken by gRPC to complete an RPC from application's perspective."),
		grpcmeter.Latency); err != nil {
		return nil, fmt.Errorf("grpcdirect: metrics: %w", err)
	}
	return m, nil
}

// methodAttrs are the precomputed measurement options of one method label.
type methodAttrs struct {
	started []otelmetric.AddOption
	ended   [codes.Unauthenticated + 1][]otelmetric.RecordOption // by grpc.status
	m       *Metrics
	method  string
}

// forMethod returns the attributes of a call of method: grpc-go labels it
// with the method (without its leading slash) when the call has
// grpc.StaticMethod, else "other".
func (m *Metrics) forMethod(method string, static bool) *methodAttrs {
	if !static {
		method = "other"
	}
	if a, ok := m.methods.Load(method); ok {
		return a.(*methodAttrs)
	}
	label := strings.TrimLeft(method, "/")
	a := &methodAttrs{m: m, method: label}
	a.started = []otelmetric.AddOption{otelmetric.WithAttributeSet(attribute.NewSet(
		attribute.String("grpc.method", label), attribute.String("grpc.target", m.target)))}
	for c := range a.ended {
		a.ended[c] = a.recordOpts(codes.Code(c))
	}
	v, _ := m.methods.LoadOrStore(method, a)
	return v.(*methodAttrs)
}

func (a *methodAttrs) recordOpts(c codes.Code) []otelmetric.RecordOption {
	return []otelmetric.RecordOption{otelmetric.WithAttributeSet(attribute.NewSet(
		attribute.String("grpc.method", a.method), attribute.String("grpc.target", a.m.target),
		attribute.String("grpc.status", grpcmeter.StatusName(c))))}
}

func (a *methodAttrs) statusOpts(c codes.Code) []otelmetric.RecordOption {
	if int(c) < len(a.ended) {
		return a.ended[c]
	}
	return a.recordOpts(c)
}

// callRecord is one call's metrics state (in the pooled call).
type callRecord struct {
	a            *methodAttrs // nil: not recorded
	callStart    time.Time
	attemptStart time.Time
}

func (r *callRecord) begin(m *Metrics, method string, static bool) {
	if m == nil {
		return
	}
	r.a = m.forMethod(method, static)
	r.callStart = time.Now()
}

func (r *callRecord) startAttempt(ctx context.Context) {
	if r.a == nil {
		return
	}
	r.attemptStart = time.Now()
	r.a.m.attemptStarted.Add(ctx, 1, r.a.started...)
}

// endAttempt records an attempt's duration and the message bytes it sent
// and received (as on the wire, compressed or not; without the 5-byte
// prefixes).
func (r *callRecord) endAttempt(ctx context.Context, cl *call, c codes.Code) {
	if r.a == nil {
		return
	}
	opts := r.a.statusOpts(c)
	m := r.a.m
	m.attemptDuration.Record(ctx, time.Since(r.attemptStart).Seconds(), opts...)
	var sent, rcvd int64
	if cl.total > 0 && cl.sent == cl.total {
		sent = int64(cl.total - 5)
	}
	if cl.msgs > 0 && cl.msgN == cl.msgLen {
		rcvd = int64(cl.msgLen)
	}
	m.attemptSent.Record(ctx, sent, opts...)
	m.attemptRcvd.Record(ctx, rcvd, opts...)
}

func (r *callRecord) endCall(ctx context.Context, c codes.Code) {
	if r.a == nil {
		return
	}
	r.a.m.callDuration.Record(ctx, time.Since(r.callStart).Seconds(), r.a.statusOpts(c)...)
}
