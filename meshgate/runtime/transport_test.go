package runtime

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
)

// bridgeSpans runs the MGP → gRPC → MGP double bridge with tracing on and
// the gRPC upstream "self" on the given client transport; it makes one
// call with the client's traceparent and one that fails, checks the trace
// links (client span → mgp-in span → grpc-in span → the traceparent the
// legacy server sees), and returns the spans' names, kinds, status codes
// and attributes (addresses of this run replaced by placeholders).
func bridgeSpans(t *testing.T, transport string) []string {
	t.Helper()
	recv, otlpAddr := startOTLP(t)
	var mu sync.Mutex
	var seen []string
	_, lAddr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(f *codec.Frame) {
		if v, ok := f.ExtValue(codec.ExtTraceparent); ok {
			mu.Lock()
			seen = append(seen, string(v))
			mu.Unlock()
		}
	}})
	grpcIn := testkit.FreeAddr(t)
	y := doubleBridgeConfig(grpcIn, lAddr, fmt.Sprintf("telemetry: {tracing: {otlp_endpoint: %q, insecure: true}}\n", otlpAddr))
	y = strings.Replace(y, "{name: self, protocol: grpc,", "{name: self, protocol: grpc, grpc_transport: "+transport+",", 1)
	cfg := mustParse(t, y)
	if got := cfg.Upstreams[0].DirectTransport(); got != (transport == config.GRPCTransportDirect) {
		t.Fatalf("%s: DirectTransport %v", transport, got)
	}
	rt := startReady(t, cfg)
	cl := dial(t, rt, "mgp-in", 1)
	ctx := testkit.Context(t, 5*time.Second)
	base := warmUp(t, cl) + 2
	waitSpans := func(n int) []*tracepb.Span {
		t.Helper()
		if err := rt.Telemetry().Flush(ctx); err != nil {
			t.Fatal(err)
		}
		for {
			spans, _ := recv.snapshot()
			if len(spans) >= n {
				return spans
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: %d spans, want %d", transport, len(spans), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitSpans(base)
	mu.Lock()
	seen = nil
	mu.Unlock()

	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	tp := "00-" + traceID + "-" + clientSpan + "-01"
	resp, err := cl.Call(ctx, 1, 42, []byte("hi"), []codec.Ext{{Key: codec.ExtTraceparent, Value: []byte(tp)}})
	if err != nil || resp.Result != 0 {
		t.Fatalf("%s: call: %v %+v", transport, err, resp)
	}
	spans := waitSpans(base + 2)[base:]
	byDir := map[string]*tracepb.Span{}
	for _, s := range spans {
		byDir[attrs(s.Attributes)["meshgate.direction"]] = s
	}
	in, out := byDir["mgp_to_grpc"], byDir["grpc_to_mgp"]
	if in == nil || out == nil {
		t.Fatalf("%s: spans by direction %v", transport, byDir)
	}
	for _, s := range spans {
		if got := hex.EncodeToString(s.TraceId); got != traceID {
			t.Errorf("%s: span %s trace id %s, want %s", transport, s.Name, got, traceID)
		}
	}
	if got := hex.EncodeToString(in.ParentSpanId); got != clientSpan {
		t.Errorf("%s: mgp-in span parent %s, want %s", transport, got, clientSpan)
	}
	// The gRPC upstream (grpc-in) got the mgp-in span as its parent: the
	// transport carried the injected traceparent.
	if got, want := hex.EncodeToString(out.ParentSpanId), hex.EncodeToString(in.SpanId); got != want {
		t.Errorf("%s: grpc-in span parent %s, want the mgp-in span %s", transport, got, want)
	}
	mu.Lock()
	if want := "00-" + traceID + "-" + hex.EncodeToString(out.SpanId) + "-01"; len(seen) != 1 || seen[0] != want {
		t.Errorf("%s: legacy server saw %q, want %q", transport, seen, want)
	}
	mu.Unlock()

	resp, err = cl.Call(ctx, 3, 7, []byte{0, 8, 'g', 'o', 'n', 'e'}, nil) // legacy Fail: result 8
	if err != nil || resp.Result != codec.ResultNotFound {
		t.Fatalf("%s: fail call: %v %+v", transport, err, resp)
	}
	spans = append(spans, waitSpans(base + 4)[base+2:]...)
	var desc []string
	for _, s := range spans {
		a := attrs(s.Attributes)
		for k, v := range a {
			a[k] = strings.NewReplacer(grpcIn, "GRPC-IN", lAddr, "LEGACY").Replace(v)
		}
		keys := slices.Sorted(maps.Keys(a))
		var b strings.Builder
		fmt.Fprintf(&b, "%s kind=%v status=%v", s.Name, s.Kind, s.Status.GetCode())
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, a[k])
		}
		desc = append(desc, b.String())
	}
	slices.Sort(desc)
	return desc
}

// TestTransportTracingParity: MeshGate's spans and trace-context
// propagation are the same whether a gRPC upstream's unary calls go over
// grpc-go's client or the direct transport: the upstream sees the same
// trace id with the calling span as parent, and the spans of both hops,
// successful and failed, carry identical names, kinds, statuses and
// attributes (endpoint, status code, byte counts, ...).
func TestTransportTracingParity(t *testing.T) {
	want := bridgeSpans(t, config.GRPCTransportGRPCGo)
	got := bridgeSpans(t, config.GRPCTransportDirect)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("spans with direct:\n%s\nwith grpc-go:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
