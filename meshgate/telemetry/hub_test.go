package telemetry

import (
	"context"
	"io"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/meshgate/accesslog"
)

var info = Info{Listener: "mgp-in", Direction: MGPToGRPC, Route: "cmd 1 <-> /a.B/C", Cmd: 1, Method: "/a.B/C", Upstream: "up", UIN: 42}

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestOffRecordsNothing: an unconfigured hub returns no call and leaves the
// traceparent as it came, without allocating.
func TestOffRecordsNothing(t *testing.T) {
	var h Hub
	md := metadata.MD{"traceparent": {parent}}
	if n := testing.AllocsPerRun(100, func() {
		_, c := h.Start(context.Background(), md, info)
		c.End(codes.OK, 0)
		_ = c.CallOptions(nil)
	}); n != 0 {
		t.Fatalf("%v allocs with telemetry off", n)
	}
	if md["traceparent"][0] != parent {
		t.Fatal("traceparent changed")
	}
	var nilHub *Hub
	if _, c := nilHub.Start(context.Background(), md, info); c != nil || nilHub.Enabled() {
		t.Fatal("nil hub records")
	}
}

// TestSpanParentAndInjection: the span is the child of the traceparent it
// was given, and the metadata then names the span.
func TestSpanParentAndInjection(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	var h Hub
	h.Set(NewTracingProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))), nil)
	md := metadata.MD{"traceparent": {parent}}
	_, c := h.Start(context.Background(), md, info)
	c.End(codes.Unavailable, 7)
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Parent().SpanID().String() != "00f067aa0ba902b7" || s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("parent %v trace %v", s.Parent().SpanID(), s.SpanContext().TraceID())
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext().SpanID().String() + "-01"; md["traceparent"][0] != want {
		t.Fatalf("injected %q, want %q", md["traceparent"][0], want)
	}
	if s.Status().Code.String() != "Error" {
		t.Fatalf("status %v", s.Status())
	}
}

func benchHub(b *testing.B, h *Hub) {
	md := metadata.MD{"traceparent": {parent}}
	b.ReportAllocs()
	for b.Loop() {
		md["traceparent"] = []string{parent}
		_, c := h.Start(context.Background(), md, info)
		if c != nil {
			c.BytesIn, c.BytesOut = 10, 20
		}
		c.End(codes.OK, 0)
	}
}

// BenchmarkHub: the per-request cost of telemetry off, tracing only
// (recording, no export), access log only (to io.Discard), and both.
func BenchmarkHub(b *testing.B) {
	tp := func() *Tracing { return NewTracingProvider(sdktrace.NewTracerProvider()) }
	b.Run("off", func(b *testing.B) { benchHub(b, &Hub{}) })
	b.Run("tracing", func(b *testing.B) {
		var h Hub
		h.Set(tp(), nil)
		benchHub(b, &h)
	})
	b.Run("accesslog", func(b *testing.B) {
		var h Hub
		h.Set(nil, accesslog.NewWriter(io.Discard, 1, true))
		benchHub(b, &h)
	})
	b.Run("both", func(b *testing.B) {
		var h Hub
		h.Set(tp(), accesslog.NewWriter(io.Discard, 1, false))
		benchHub(b, &h)
	})
}
