package grpcserve

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelmetric "go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcotel "google.golang.org/grpc/stats/opentelemetry"

	"github.com/meshgate/meshgate/meshgate/grpcmeter"
)

// Metrics records, for the calls this transport serves, the per-call
// server instruments of grpc-go's OpenTelemetry instrumentation
// (google.golang.org/grpc/stats/opentelemetry, server_metrics.go):
// grpc.server.call.started, grpc.server.call.duration,
// grpc.server.call.sent_total_compressed_message_size and
// grpc.server.call.rcvd_total_compressed_message_size, with the same meter
// (package grpcmeter), names, units, descriptions, bucket boundaries and
// attributes (grpc.method, grpc.status). Created on the MeterProvider the
// listener's grpc.Server records on, they are the same instruments: a call
// served here and one served by grpc-go land in the same series.
//
// grpc-go labels a call with its method (without the leading slash) when
// the method is registered on the server, and with "other" otherwise (a
// method served by the unknown-service handler, as every routed method
// is); calls with a malformed method name, and streams the transport
// refuses or rejects for their headers, are not recorded (grpc-go's
// transport rejects them before its stats handlers run). What is
// recorded, and when:
//   - started: once the request headers are accepted;
//   - duration, sizes: when the handler finishes the call (its status:
//     the code Finish was given), or when the transport answers it
//     without the handler (message too large or truncated, recv_timeout,
//     max_in_flight_per_connection; no message counted), or CANCELLED
//     when the client resets the stream or the connection closes before
//     the request was complete;
//   - sizes are the message bytes as on the wire (compressed or not)
//     without the 5-byte prefix, as grpc-go's CompressedLength; the
//     request message counts once the handler asked for it
//     (Call.Message), as grpc-go counts it when the handler receives it.
//
// Attribute sets are built once per label and status, so recording
// allocates only what the OTel SDK itself does. A nil *Metrics records
// nothing.
type Metrics struct {
	started  otelmetric.Int64Counter
	duration otelmetric.Float64Histogram
	sent     otelmetric.Int64Histogram
	rcvd     otelmetric.Int64Histogram

	registered map[string]*methodAttrs // "/svc/method" → attributes; read-only after NewMetrics
	other      *methodAttrs
}

// NewMetrics creates the instruments on mp for a server whose grpc-go
// counterpart has services (grpc.Server.GetServiceInfo: the methods
// labelled by name). A nil mp gives a nil *Metrics.
func NewMetrics(mp otelmetric.MeterProvider, services map[string]grpc.ServiceInfo) (*Metrics, error) {
	if mp == nil {
		return nil, nil
	}
	meter := grpcmeter.Meter(mp)
	m := &Metrics{registered: map[string]*methodAttrs{}}
	var err error
	if m.started, err = meter.Int64Counter(grpcotel.ServerCallStartedMetricName,
		otelmetric.WithUnit("{call}"), otelmetric.WithDescription("Number of server calls started.")); err != nil {
		return nil, fmt.Errorf("grpcserve: metrics: %w", err)
	}
	if m.sent, err = meter.Int64Histogram(grpcotel.ServerCallSentCompressedTotalMessageSizeMetricName,
		otelmetric.WithUnit("By"), otelmetric.WithDescription("Compressed message bytes sent per server call."), grpcmeter.Size); err != nil {
		return nil, fmt.Errorf("grpcserve: metrics: %w", err)
	}
	if m.rcvd, err = meter.Int64Histogram(grpcotel.ServerCallRcvdCompressedTotalMessageSizeMetricName,
		otelmetric.WithUnit("By"), otelmetric.WithDescription("Compressed message bytes received per server call."), grpcmeter.Size); err != nil {
		return nil, fmt.Errorf("grpcserve: metrics: %w", err)
	}
	if m.duration, err = meter.Float64Histogram(grpcotel.ServerCallDurationMetricName,
		otelmetric.WithUnit("s"), otelmetric.WithDescription("End-to-end time taken to complete a call from server transport's perspective."), grpcmeter.Latency); err != nil {
		return nil, fmt.Errorf("grpcserve: metrics: %w", err)
	}
	m.other = newMethodAttrs("other")
	for svc, info := range services {
		for _, mi := range info.Methods {
			name := svc + "/" + mi.Name
			m.registered["/"+name] = newMethodAttrs(name)
		}
	}
	return m, nil
}

// methodAttrs are the precomputed measurement options of one grpc.method
// label.
type methodAttrs struct {
	label   string
	started []otelmetric.AddOption
	ended   [codes.Unauthenticated + 1][]otelmetric.RecordOption // by grpc.status
}

func newMethodAttrs(label string) *methodAttrs {
	a := &methodAttrs{label: label}
	a.started = []otelmetric.AddOption{otelmetric.WithAttributeSet(attribute.NewSet(attribute.String("grpc.method", label)))}
	for c := range a.ended {
		a.ended[c] = a.endOpts(codes.Code(c))
	}
	return a
}

func (a *methodAttrs) endOpts(c codes.Code) []otelmetric.RecordOption {
	return []otelmetric.RecordOption{otelmetric.WithAttributeSet(attribute.NewSet(
		attribute.String("grpc.method", a.label), attribute.String("grpc.status", grpcmeter.StatusName(c))))}
}

func (a *methodAttrs) statusOpts(c codes.Code) []otelmetric.RecordOption {
	if int(c) < len(a.ended) {
		return a.ended[c]
	}
	return a.endOpts(c)
}

// label returns the attributes of a call of method, nil for a malformed
// method name (grpc-go's server answers it without its stats handlers).
func (m *Metrics) label(method string) *methodAttrs {
	if a, ok := m.registered[method]; ok {
		return a
	}
	sm, ok := strings.CutPrefix(method, "/")
	if !ok || !strings.Contains(sm, "/") {
		return nil
	}
	return m.other
}

// callRecord is a call's metrics state.
type callRecord struct {
	// a: the call's attributes, nil: not recorded (atomic: the
	// housekeeping timer may end a call the reading goroutine began)
	a    atomic.Pointer[methodAttrs]
	done atomic.Bool // the end was recorded
	code codes.Code  // the handler's status (noted when it finishes)
	sent int64       // response message bytes (noted when it finishes)
	read bool        // the handler asked for the request message (Call.Message)
}

// begin counts cl started (its headers were accepted).
func (m *Metrics) begin(ctx context.Context, cl *Call) {
	if m == nil {
		return
	}
	if a := m.label(cl.method); a != nil {
		cl.rec.a.Store(a)
		m.started.Add(ctx, 1, a.started...)
	}
}

// note keeps the outcome the handler finished cl with (hmu held, in
// settle): its status and the message it sends.
func (r *callRecord) note(cl *Call) {
	if r.a.Load() == nil {
		return
	}
	r.code = codes.OK
	if cl.st != nil {
		r.code = cl.st.Code()
	}
	if cl.hasOut && cl.st == nil && len(cl.out) >= 5 {
		r.sent = int64(len(cl.out) - 5)
	}
}

// finished records the end of a call the handler finished (after note).
func (m *Metrics) finished(ctx context.Context, cl *Call) {
	if m == nil {
		return
	}
	var rcvd int64
	if cl.hasMsg && cl.rec.read { // grpc-go counts what the handler receives
		rcvd = int64(cl.msgLen)
	}
	m.end(ctx, cl, cl.rec.code, cl.rec.sent, rcvd)
}

// answered records the end of a call the handler never saw, with code.
func (m *Metrics) answered(ctx context.Context, cl *Call, code codes.Code) {
	if m == nil {
		return
	}
	m.end(ctx, cl, code, 0, 0)
}

func (m *Metrics) end(ctx context.Context, cl *Call, code codes.Code, sent, rcvd int64) {
	a := cl.rec.a.Load()
	if a == nil || cl.rec.done.Swap(true) {
		return
	}
	opts := a.statusOpts(code)
	m.duration.Record(ctx, time.Since(cl.opened).Seconds(), opts...)
	m.sent.Record(ctx, sent, opts...)
	m.rcvd.Record(ctx, rcvd, opts...)
}
