package runtime

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/accesslog"
)

// otlpReceiver is an in-process OTLP/gRPC trace collector.
type otlpReceiver struct {
	collectortracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []*commonpb.KeyValue
}

func (o *otlpReceiver) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		o.res = rs.GetResource().GetAttributes()
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func (o *otlpReceiver) snapshot() ([]*tracepb.Span, []*commonpb.KeyValue) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*tracepb.Span(nil), o.spans...), o.res
}

// atLeast waits (up to 5s, without failing: the caller asserts) until n
// spans have arrived and returns the snapshot then.
func (o *otlpReceiver) atLeast(n int) ([]*tracepb.Span, []*commonpb.KeyValue) {
	testkit.Await(5*time.Second, func() bool { s, _ := o.snapshot(); return len(s) >= n })
	return o.snapshot()
}

func startOTLP(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	o := &otlpReceiver{}
	gs := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(gs, o)
	return o, testkit.Serve(t, gs, nil)
}

// attrs is an OTLP attribute list as a map of printed values.
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.Key] = v.GetStringValue()
		default:
			m[kv.Key] = fmt.Sprint(v.GetIntValue())
		}
	}
	return m
}

// doubleBridge is one MeshGate routing to itself: MGP client → mgp-in
// (private → gRPC) → grpc-in (gRPC → private) → legacy server.
func doubleBridgeConfig(grpcIn, legacyEP, extra string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s, drain_timeout: 2s}
listeners:
  - name: mgp-in
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 1, method: /legacy.Legacy/Echo, upstream: self}
      - {cmd: 3, method: /legacy.Legacy/Fail, upstream: self}
  - name: grpc-in
    kind: grpc
    address: %s
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
      - {method: /legacy.Legacy/Fail, cmd: 3, upstream: legacy}
upstreams:
  - {name: self, protocol: grpc, endpoints: [%q]}
  - {name: legacy, protocol: private, endpoints: [%q]}
%s`, grpcIn, grpcIn, legacyEP, extra)
}

// TestTracingDoubleBridge: the spans of an MGP → gRPC → MGP double bridge
// reach an OTLP collector with the client's trace id, the right parent
// links (client → mgp-in span → grpc-in span → traceparent the legacy
// server sees) and attributes; the access log has one line per hop.
func TestTracingDoubleBridge(t *testing.T) {
	recv, otlpAddr := startOTLP(t)
	var mu sync.Mutex
	var seen []string // traceparents the legacy server received
	_, lAddr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(f *codec.Frame) {
		if v, ok := f.ExtValue(codec.ExtTraceparent); ok {
			mu.Lock()
			seen = append(seen, string(v))
			mu.Unlock()
		}
	}})

	logPath := filepath.Join(t.TempDir(), "access.log")
	grpcIn := testkit.FreeAddr(t)
	rt := startReady(t, mustParse(t, doubleBridgeConfig(grpcIn, lAddr, fmt.Sprintf(`
telemetry:
  tracing:
    otlp_endpoint: %q
    insecure: true
    service_name: mg-test
    resource_attributes: {deployment.environment: test}
access_log: {path: %q, hash_uin: true}
`, otlpAddr, logPath))))
	cl := dial(t, rt, "mgp-in", 1)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const clientSpan = "00f067aa0ba902b7"
	ctx := testkit.Context(t, 5*time.Second)
	// The self-upstream may have tried to connect before its listener was
	// bound: call until it answers. Each failed try is one span and one
	// log line (mgp-in only); the success two of each.
	base := warmUp(t, cl) + 2
	if err := rt.Telemetry().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	readLines(t, logPath, base)
	recv.atLeast(base)
	mu.Lock()
	seen = nil
	mu.Unlock()

	tp := "00-" + traceID + "-" + clientSpan + "-01"
	resp, err := cl.Call(ctx, 1, 42, []byte("hi"), []codec.Ext{{Key: codec.ExtTraceparent, Value: []byte(tp)}})
	if err != nil || resp.Result != 0 || string(resp.Body) != "hi" {
		t.Fatalf("call: %v %+v", err, resp)
	}
	if err := rt.Telemetry().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	spans, res := recv.atLeast(base + 2)
	spans = spans[base:]
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	byDir := map[string]*tracepb.Span{}
	for _, s := range spans {
		byDir[attrs(s.Attributes)["meshgate.direction"]] = s
	}
	in, out := byDir["mgp_to_grpc"], byDir["grpc_to_mgp"]
	if in == nil || out == nil {
		t.Fatalf("spans by direction: %v", byDir)
	}
	for _, s := range spans {
		if got := hex.EncodeToString(s.TraceId); got != traceID {
			t.Errorf("span %s trace id %s, want the client's %s", s.Name, got, traceID)
		}
		if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("span %s kind %v", s.Name, s.Kind)
		}
	}
	if got := hex.EncodeToString(in.ParentSpanId); got != clientSpan {
		t.Errorf("mgp-in span parent %s, want the client's span %s", got, clientSpan)
	}
	if got, want := hex.EncodeToString(out.ParentSpanId), hex.EncodeToString(in.SpanId); got != want {
		t.Errorf("grpc-in span parent %s, want the mgp-in span %s", got, want)
	}
	mu.Lock()
	if len(seen) != 1 || seen[0] != "00-"+traceID+"-"+hex.EncodeToString(out.SpanId)+"-01" {
		t.Errorf("legacy server saw traceparent %q, want the grpc-in span %x as parent", seen, out.SpanId)
	}
	mu.Unlock()
	ia, oa := attrs(in.Attributes), attrs(out.Attributes)
	for k, want := range map[string]string{
		"meshgate.listener": "mgp-in", "meshgate.cmd": "1", "rpc.method": "/legacy.Legacy/Echo",
		"meshgate.upstream": "self", "meshgate.endpoint": grpcIn, "meshgate.result": "0",
		"rpc.grpc.status_code": "0", "meshgate.route": "cmd 1 <-> /legacy.Legacy/Echo", "rpc.system": "grpc",
		"meshgate.bytes_in": "2", "meshgate.bytes_out": "2",
	} {
		if ia[k] != want {
			t.Errorf("mgp-in span %s = %q, want %q", k, ia[k], want)
		}
	}
	for k, want := range map[string]string{
		"meshgate.listener": "grpc-in", "meshgate.cmd": "1", "rpc.method": "/legacy.Legacy/Echo",
		"meshgate.upstream": "legacy", "meshgate.result": "0", "meshgate.bytes_in": "2", "meshgate.bytes_out": "2",
		"meshgate.endpoint": lAddr,
	} {
		if oa[k] != want {
			t.Errorf("grpc-in span %s = %q, want %q", k, oa[k], want)
		}
	}
	if ra := attrs(res); ra["service.name"] != "mg-test" || ra["deployment.environment"] != "test" {
		t.Errorf("resource attributes %v", ra)
	}

	// The access log: one JSON line per hop, field by field.
	lines := readLines(t, logPath, base+2)[base:]
	byListener := map[string]map[string]any{}
	for _, l := range lines {
		byListener[l["listener"].(string)] = l
	}
	hu := accesslog.HashUIN(42)
	for name, want := range map[string]map[string]any{
		"mgp-in": {"direction": "mgp_to_grpc", "route": "cmd 1 <-> /legacy.Legacy/Echo", "cmd": 1.0, "method": "/legacy.Legacy/Echo",
			"uin_hash": hu, "upstream": "self", "endpoint": grpcIn, "result": 0.0, "code": "OK", "bytes_in": 2.0, "bytes_out": 2.0, "trace_id": traceID, "msg": "request"},
		"grpc-in": {"direction": "grpc_to_mgp", "cmd": 1.0, "method": "/legacy.Legacy/Echo", "uin_hash": hu, "upstream": "legacy", "endpoint": lAddr,
			"result": 0.0, "code": "OK", "bytes_in": 2.0, "bytes_out": 2.0, "trace_id": traceID},
	} {
		l := byListener[name]
		if l == nil {
			t.Fatalf("no access log line for %s in %v", name, lines)
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("access log %s: %s = %v, want %v", name, k, l[k], v)
			}
		}
		if _, ok := l["uin"]; ok {
			t.Errorf("access log %s: raw uin logged under hash_uin", name)
		}
		if d, ok := l["duration_ms"].(float64); !ok || d <= 0 {
			t.Errorf("access log %s: duration_ms %v", name, l["duration_ms"])
		}
	}

	// A failed call: the span records the error, the log the result.
	spansBefore := base + len(spans)
	fb := []byte{0, 8, 'g', 'o', 'n', 'e'} // legacy Fail: result 8 (not found), message
	resp, err = cl.Call(ctx, 3, 7, fb, nil)
	if err != nil || resp.Result != codec.ResultNotFound {
		t.Fatalf("fail call: %v %+v", err, resp)
	}
	if err := rt.Telemetry().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	spans, _ = recv.atLeast(spansBefore + 2)
	for _, s := range spans[spansBefore:] {
		a := attrs(s.Attributes)
		if a["meshgate.result"] != "8" || a["rpc.grpc.status_code"] != "5" || s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("failed span %s: attrs %v status %v", s.Name, a, s.Status)
		}
	}
	lines = readLines(t, logPath, base+4)
	for _, l := range lines[base+2:] {
		if l["result"] != 8.0 || l["code"] != "NotFound" || l["cmd"] != 3.0 {
			t.Errorf("failed call log line %v", l)
		}
	}
	// An application result (1234: UNKNOWN + x-mgp-result) is logged as
	// itself on both hops.
	resp, err = cl.Call(ctx, 3, 7, []byte{0x04, 0xd2, 'a', 'p', 'p'}, nil)
	if err != nil || resp.Result != 1234 {
		t.Fatalf("app result call: %v %+v", err, resp)
	}
	lines = readLines(t, logPath, base+6)
	for _, l := range lines[base+4:] {
		if l["result"] != 1234.0 || l["code"] != "Unknown" {
			t.Errorf("app result log line %v", l)
		}
	}
}

// readLines polls path until it has n JSON lines (bounded) and returns them.
func readLines(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	var out []map[string]any
	testkit.Await(3*time.Second, func() bool {
		out = nil
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("access log line %q: %v", sc.Text(), err)
				}
				out = append(out, m)
			}
			_ = f.Close()
		}
		return len(out) >= n
	})
	if len(out) != n {
		t.Fatalf("access log has %d lines, want %d", len(out), n)
	}
	return out
}

// warmUp calls cmd 1 on cl until it succeeds (bounded) and returns the
// number of failed tries.
func warmUp(t *testing.T, cl *legacy.Client) int {
	t.Helper()
	failed := -1
	testkit.Succeeds(t, testkit.Context(t, 5*time.Second), 20*time.Millisecond, func() error {
		failed++
		if r, err := call(cl, 1, "w"); err != nil || r.Result != 0 {
			return fmt.Errorf("%v %+v", err, r)
		}
		return nil
	}, "bridge never answered")
	return failed
}

// TestGRPCMetricsOnAdmin: with telemetry.grpc_metrics, grpc-go's standard
// OpenTelemetry metrics of both the gRPC listener (server) and the gRPC
// upstream (client) appear on /metrics beside meshgate_*.
func TestGRPCMetricsOnAdmin(t *testing.T) {
	grpcIn := testkit.FreeAddr(t)
	rt := startReady(t, mustParse(t, doubleBridgeConfig(grpcIn, legacyServer(t), "telemetry: {grpc_metrics: true}\n")))
	cl := dial(t, rt, "mgp-in", 1)
	warmUp(t, cl)
	for range 3 {
		if r, err := call(cl, 1, "m"); err != nil || r.Result != 0 {
			t.Fatalf("call: %v %+v", err, r)
		}
	}
	_, metrics := get(t, "http://"+rt.AdminAddr().String()+"/metrics")
	for _, want := range []string{
		`grpc_client_attempt_duration_seconds_count{grpc_method="legacy.Legacy/Echo",grpc_status="OK",grpc_target=`,
		`grpc_client_call_duration_seconds_count{grpc_method="legacy.Legacy/Echo",grpc_status="OK",grpc_target=`,
		`grpc_client_attempt_sent_total_compressed_message_size_bytes_count{grpc_method="legacy.Legacy/Echo"`,
		`grpc_server_call_duration_seconds_count{grpc_method="other",grpc_status="OK"`,
		`grpc_server_call_rcvd_total_compressed_message_size_bytes_count{grpc_method="other",grpc_status="OK"`,
		`meshgate_requests_total{code="OK",listener="mgp-in",route="1",upstream="self"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, "grpc_") {
				t.Log(l)
			}
		}
	}
}

// TestTelemetryReload: a reload swaps the access log and turns tracing
// off; later requests go to the new log only and record no spans; the
// replaced exporter is shut down with the runtime (goleak in TestMain).
func TestTelemetryReload(t *testing.T) {
	recv, otlpAddr := startOTLP(t)
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	grpcIn := testkit.FreeAddr(t)
	legacyEP := legacyServer(t)
	y := func(extra string) string { return doubleBridgeConfig(grpcIn, legacyEP, extra) }
	rt := startReady(t, mustParse(t, y(fmt.Sprintf("telemetry: {tracing: {otlp_endpoint: %q, insecure: true}}\naccess_log: {path: %q}\n", otlpAddr, logA))))
	cl := dial(t, rt, "mgp-in", 1)
	n := warmUp(t, cl) + 2
	readLines(t, logA, n)
	if err := rt.Reload(mustParse(t, y(fmt.Sprintf("access_log: {path: %q, sample_ratio: 1}\n", logB)))); err != nil {
		t.Fatal(err)
	}
	if r, err := call(cl, 1, "after"); err != nil || r.Result != 0 {
		t.Fatalf("call: %v %+v", err, r)
	}
	readLines(t, logB, 2)
	readLines(t, logA, n)
	// Closing flushes the replaced tracer: the spans from before the
	// reload arrive, none from after.
	_ = cl.Close()
	rt.Close()
	if spans, _ := recv.atLeast(n); len(spans) != n {
		t.Fatalf("%d spans exported, want the %d from before the reload", len(spans), n)
	}
}

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
	ctx := testkit.Context(t, 5*time.Second)

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

	cc := testkit.Client(t, rt.Addr("g2g").String())
	var out []byte
	if err := cc.Invoke(metadata.AppendToOutgoingContext(ctx, "traceparent", tp), demo.MethodEcho, []byte("abc"), &out); err != nil || string(out) != "abc" {
		t.Fatalf("gRPC → gRPC: %q, %v", out, err)
	}

	if err := rt.Telemetry().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	spans, _ := recv.atLeast(2)
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
