package telemetry

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/meshgate/meshgate/meshgate/accesslog"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// Directions of a bridged request.
const (
	MGPToGRPC = "mgp_to_grpc" // private listener → gRPC upstream (package inbound)
	GRPCToMGP = "grpc_to_mgp" // grpc listener → private upstream (package outbound)
	// Passthrough paths (no protocol conversion).
	MGPToMGP   = "mgp_to_mgp"   // private listener → private upstream (frame proxy, package inbound)
	GRPCToGRPC = "grpc_to_grpc" // grpc listener → gRPC upstream (raw-bytes proxy, package outbound)
)

// Span attribute keys (beside the semantic-convention rpc.* ones).
const (
	AttrListener  = attribute.Key("meshgate.listener")
	AttrDirection = attribute.Key("meshgate.direction")
	AttrRoute     = attribute.Key("meshgate.route")
	AttrCmd       = attribute.Key("meshgate.cmd")
	AttrUpstream  = attribute.Key("meshgate.upstream")
	AttrEndpoint  = attribute.Key("meshgate.endpoint")
	AttrResult    = attribute.Key("meshgate.result")
	AttrBytesIn   = attribute.Key("meshgate.bytes_in")
	AttrBytesOut  = attribute.Key("meshgate.bytes_out")
	AttrRPCMethod = attribute.Key("rpc.method")
	AttrRPCSystem = attribute.Key("rpc.system")
	AttrGRPCCode  = attribute.Key("rpc.grpc.status_code")
)

// Hub is the per-process telemetry state the request paths consult: the
// tracer (or none) and the access log (or none). Set swaps both atomically
// (config reload); a request keeps the state it started with. The zero Hub
// and a nil *Hub record nothing.
type Hub struct {
	st atomic.Pointer[state]

	mu      sync.Mutex
	retired map[*time.Timer]func()
}

type state struct {
	tr   *Tracing
	alog *accesslog.Logger
}

// Set installs tr and al (either may be nil) and returns the previous ones
// for the caller to shut down once requests that started on them ended.
func (h *Hub) Set(tr *Tracing, al *accesslog.Logger) (oldTr *Tracing, oldLog *accesslog.Logger) {
	var st *state
	if tr != nil || al != nil {
		st = &state{tr: tr, alog: al}
	}
	if old := h.st.Swap(st); old != nil {
		return old.tr, old.alog
	}
	return nil, nil
}

// Retire runs closeFn after d (requests that started on replaced
// telemetry finish first), or at Close, whichever comes first.
func (h *Hub) Retire(d time.Duration, closeFn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retired == nil {
		h.retired = map[*time.Timer]func(){}
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		h.mu.Lock()
		_, still := h.retired[t]
		delete(h.retired, t)
		h.mu.Unlock()
		if still {
			closeFn()
		}
	})
	h.retired[t] = closeFn
}

// CloseRetired runs every pending Retire function now.
func (h *Hub) CloseRetired() {
	h.mu.Lock()
	fns := make([]func(), 0, len(h.retired))
	for t, fn := range h.retired {
		if t.Stop() {
			fns = append(fns, fn)
		}
		delete(h.retired, t)
	}
	h.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Enabled reports whether anything is recorded.
func (h *Hub) Enabled() bool { return h != nil && h.st.Load() != nil }

// Info describes one bridged request.
type Info struct {
	Listener  string
	Direction string // MGPToGRPC, GRPCToMGP, MGPToMGP or GRPCToGRPC
	Route     string // e.g. "cmd 1 -> /pkg.Svc/M"
	Cmd       uint32
	Method    string // full gRPC method
	Upstream  string
	UIN       uint64
}

// RouteName is the route label of a cmd ⇄ method route.
func RouteName(cmd uint32, method string) string { return ProxyRouteName(CmdName(cmd), method) }

// CmdName is a cmd as route labels name it ("cmd 70").
func CmdName(cmd uint32) string { return "cmd " + strconv.FormatUint(uint64(cmd), 10) }

// ProxyRouteName is the route label of a passthrough route: what the
// listener matched and what is sent upstream ("cmd 70 <-> cmd 2",
// "/a.S/* <-> /a.S/*").
func ProxyRouteName(from, to string) string {
	return from + " <-> " + to
}

// Call is one recorded request; nil when nothing is recorded (every
// method is nil-safe).
type Call struct {
	st    *state
	span  trace.Span
	info  Info
	start time.Time
	log   bool
	trace string

	// Peer receives the gRPC upstream's address (grpc.Peer call option).
	Peer peer.Peer
	// Endpoint, when set, names the upstream endpoint (else Peer.Addr).
	Endpoint string
	// BytesIn/BytesOut are the request and response body sizes.
	BytesIn, BytesOut int

	trailer metadata.MD // set on a wrapped stream
}

// Trailer returns the trailer set on a stream wrapped by WrapStream.
func (c *Call) Trailer() metadata.MD {
	if c == nil {
		return nil
	}
	return c.trailer
}

// Start begins recording a request. md is the request's metadata on the
// gRPC side (inbound: the outgoing metadata built from the frame; outbound:
// a copy of the incoming metadata, before it becomes the frame): its
// traceparent is the parent and is replaced by the new span's context, so
// the next hop becomes its child. Returns ctx unchanged and nil when
// nothing is recorded.
func (h *Hub) Start(ctx context.Context, md metadata.MD, info Info) (context.Context, *Call) {
	if h == nil {
		return ctx, nil
	}
	st := h.st.Load()
	if st == nil {
		return ctx, nil
	}
	logIt := st.alog.Sampled()
	if st.tr == nil && !logIt {
		return ctx, nil
	}
	c := &Call{st: st, info: info, start: time.Now(), log: logIt}
	if st.tr != nil {
		pctx := st.tr.prop.Extract(ctx, mdCarrier(md))
		name := info.Method
		if name == "" {
			name = "cmd " + strconv.FormatUint(uint64(info.Cmd), 10)
		}
		ctx, c.span = st.tr.tracer.Start(pctx, name,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				AttrListener.String(info.Listener),
				AttrDirection.String(info.Direction),
				AttrRoute.String(info.Route),
				AttrCmd.Int64(int64(info.Cmd)),
				AttrRPCSystem.String("grpc"),
				AttrRPCMethod.String(info.Method),
				AttrUpstream.String(info.Upstream),
			))
		if sc := c.span.SpanContext(); sc.IsValid() {
			st.tr.prop.Inject(ctx, mdCarrier(md))
			c.trace = sc.TraceID().String()
		}
	} else if v := md[mdTraceparent]; len(v) > 0 {
		c.trace = traceIDOf(v[0])
	}
	return ctx, c
}

// CallOptions returns opts plus the options the call needs to fill c
// (the upstream's address); opts itself when c is nil.
func (c *Call) CallOptions(opts []grpc.CallOption) []grpc.CallOption {
	if c == nil {
		return opts
	}
	return append(opts[:len(opts):len(opts)], grpc.Peer(&c.Peer))
}

// End finishes the request with its outcome: the gRPC code and the frame
// result it maps to.
func (c *Call) End(code codes.Code, result uint16) {
	if c == nil {
		return
	}
	ep := c.Endpoint
	if ep == "" && c.Peer.Addr != nil {
		ep = c.Peer.Addr.String()
	}
	if c.span != nil {
		c.span.SetAttributes(
			AttrEndpoint.String(ep),
			AttrResult.Int(int(result)),
			AttrGRPCCode.Int(int(code)),
			AttrBytesIn.Int(c.BytesIn),
			AttrBytesOut.Int(c.BytesOut),
		)
		if code != codes.OK {
			c.span.SetStatus(otelcodes.Error, code.String())
		}
		c.span.End()
	}
	if c.log {
		c.st.alog.Log(&accesslog.Entry{
			Listener: c.info.Listener, Direction: c.info.Direction, Route: c.info.Route,
			Cmd: c.info.Cmd, Method: c.info.Method, UIN: c.info.UIN, Upstream: c.info.Upstream,
			Endpoint: ep, Result: result, Code: code.String(), Duration: time.Since(c.start),
			BytesIn: c.BytesIn, BytesOut: c.BytesOut, TraceID: c.trace,
		})
	}
}

// WrapStream starts recording a call on a grpc listener (outbound): the
// returned stream's context carries the span and incoming metadata whose
// traceparent is the span's, and it counts the request and response bytes.
// It returns stream itself and nil when nothing is recorded.
func (h *Hub) WrapStream(stream grpc.ServerStream, info Info) (grpc.ServerStream, *Call) {
	if !h.Enabled() {
		return stream, nil
	}
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx) // a copy
	if md == nil {
		md = metadata.MD{}
	}
	ctx, c := h.Start(ctx, md, info)
	if c == nil {
		return stream, nil
	}
	return &countingStream{ServerStream: stream, ctx: metadata.NewIncomingContext(ctx, md), c: c}, c
}

type countingStream struct {
	grpc.ServerStream
	ctx context.Context
	c   *Call
}

func (s *countingStream) Context() context.Context { return s.ctx }

// SetTrailer remembers the trailer (x-mgp-result of application results)
// for End's result.
func (s *countingStream) SetTrailer(md metadata.MD) {
	s.c.trailer = metadata.Join(s.c.trailer, md)
	s.ServerStream.SetTrailer(md)
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.c.BytesIn += msgLen(m)
	}
	return err
}

func (s *countingStream) SendMsg(m any) error {
	n := msgLen(m) // before: sending may hand a raw message's buffer over
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.c.BytesOut += n
	}
	return err
}

func msgLen(m any) int {
	switch v := m.(type) {
	case *rawcodec.Message:
		return v.Len()
	case *[]byte:
		return len(*v)
	case []byte:
		return len(v)
	}
	return 0
}

const mdTraceparent = "traceparent"

// traceIDOf returns the trace id of a W3C traceparent, or "".
func traceIDOf(tp string) string {
	// version "-" trace-id(32) "-" parent-id(16) "-" flags
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' {
		return ""
	}
	return tp[3:35]
}

// mdCarrier adapts gRPC metadata to the propagation.TextMapCarrier.
type mdCarrier metadata.MD

func (c mdCarrier) Get(k string) string {
	if v := c[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(k, v string) { c[k] = []string{v} }

func (c mdCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// Flush exports the spans ended so far (tests, before shutdown).
func (h *Hub) Flush(ctx context.Context) error {
	if h == nil {
		return nil
	}
	if st := h.st.Load(); st != nil && st.tr != nil {
		return st.tr.tp.ForceFlush(ctx)
	}
	return nil
}
