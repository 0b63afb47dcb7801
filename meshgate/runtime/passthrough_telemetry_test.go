package runtime

import (
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// TestPassthroughTelemetry: private → private and gRPC → gRPC requests get
// a span (child of the caller's traceparent, parent of what goes upstream)
// and an access-log line, like the bridged paths.
func TestPassthroughTelemetry(t *testing.T) {
	recv, otlpAddr := startOTLP(t)
	lb := startLegacy(t)
	ep := grpcBackend(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	rt := start(t, mustParse(t, fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s}
telemetry:
  tracing: {otlp_endpoint: %q, insecure: true}
access_log: {path: %q}
listeners:
  - name: p2p
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 70, upstream: legacy, rewrite_cmd: 2}
  - name: g2g
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: /demo.Echo/*, upstream: up}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 1}
  - {name: up, protocol: grpc, endpoints: [%q]}
`, otlpAddr, logPath, lb.addr, ep)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const clientSpan = "00f067aa0ba902b7"
	tp := "00-" + traceID + "-" + clientSpan + "-01"

	cl := dial(t, rt, "p2p", 1)
	resp, err := cl.Call(ctx, 70, 9, []byte("shout"), []codec.Ext{{Key: codec.ExtTraceparent, Value: []byte(tp)}})
	if err != nil || resp.Result != 0 || string(resp.Body) != "SHOUT" {
		t.Fatalf("private → private: %v %+v", err, resp)
	}
	last := lb.last()
	upTP, _ := last.ExtValue(codec.ExtTraceparent)

	cc, err := grpc.NewClient(rt.Addr("g2g").String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var out []byte
	if err := cc.Invoke(metadata.AppendToOutgoingContext(ctx, "traceparent", tp), demo.MethodEcho, []byte("abc"), &out); err != nil || string(out) != "abc" {
		t.Fatalf("gRPC → gRPC: %q, %v", out, err)
	}

	if err := rt.Telemetry().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var spans []*tracepb.Span
	for ctx.Err() == nil {
		if spans, _ = recv.snapshot(); len(spans) >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	byDir := map[string]*tracepb.Span{}
	for _, s := range spans {
		byDir[attrs(s.Attributes)["meshgate.direction"]] = s
	}
	p, g := byDir["mgp_to_mgp"], byDir["grpc_to_grpc"]
	if len(spans) != 2 || p == nil || g == nil {
		t.Fatalf("spans by direction: %v", byDir)
	}
	for _, s := range spans {
		if hex.EncodeToString(s.TraceId) != traceID || hex.EncodeToString(s.ParentSpanId) != clientSpan {
			t.Errorf("span %s: trace %x parent %x, want the client's %s/%s", s.Name, s.TraceId, s.ParentSpanId, traceID, clientSpan)
		}
	}
	if want := "00-" + traceID + "-" + hex.EncodeToString(p.SpanId) + "-01"; string(upTP) != want {
		t.Errorf("private upstream saw traceparent %q, want %q (the proxy's span as parent)", upTP, want)
	}
	for k, want := range map[string]string{
		"meshgate.listener": "p2p", "meshgate.route": "cmd 70 <-> cmd 2", "meshgate.cmd": "70",
		"meshgate.upstream": "legacy", "meshgate.endpoint": lb.addr, "meshgate.result": "0",
		"meshgate.bytes_in": "5", "meshgate.bytes_out": "5",
	} {
		if got := attrs(p.Attributes)[k]; got != want {
			t.Errorf("p2p span %s = %q, want %q", k, got, want)
		}
	}
	for k, want := range map[string]string{
		"meshgate.listener": "g2g", "meshgate.route": "/demo.Echo/* <-> /demo.Echo/*", "rpc.method": demo.MethodEcho,
		"meshgate.upstream": "up", "meshgate.endpoint": ep, "rpc.grpc.status_code": "0",
		"meshgate.bytes_in": "3", "meshgate.bytes_out": "3",
	} {
		if got := attrs(g.Attributes)[k]; got != want {
			t.Errorf("g2g span %s = %q, want %q", k, got, want)
		}
	}

	lines := readLines(t, logPath, 2)
	dirs := map[any]map[string]any{}
	for _, l := range lines {
		dirs[l["direction"]] = l
	}
	if l := dirs["mgp_to_mgp"]; l == nil || l["listener"] != "p2p" || l["upstream"] != "legacy" || l["code"] != "OK" || l["trace_id"] != traceID {
		t.Errorf("p2p access log line %v", l)
	}
	if l := dirs["grpc_to_grpc"]; l == nil || l["listener"] != "g2g" || l["method"] != demo.MethodEcho || l["code"] != "OK" || l["trace_id"] != traceID {
		t.Errorf("g2g access log line %v", l)
	}
}
