package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/descset/descsettest"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

type otlpSink struct {
	collectortracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (o *otlpSink) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

// TestObservabilityBinary runs the real binary with tracing, the access log,
// grpc-go metrics, reflection and -log-format json, and checks each from
// the outside: an MGP → gRPC → MGP double bridge (one config routing to
// itself) exports two linked spans to an OTLP collector and writes two
// access-log lines; /metrics carries grpc-go's metrics; reflection lists
// the routed service; a gzip call works; every log line is JSON.
func TestObservabilityBinary(t *testing.T) {
	sink := &otlpSink{}
	gs := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(gs, sink)
	otlp := testkit.Serve(t, gs, nil)

	ls, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})

	dir := t.TempDir()
	ps := descsettest.Write(t, dir)
	logPath := dir + "/access.log"
	cfg := fmt.Sprintf(`
defaults: {drain_timeout: 1s}
telemetry:
  tracing: {otlp_endpoint: %q, insecure: true, service_name: e2e}
  grpc_metrics: true
access_log: {path: %q}
listeners:
- name: priv_in
  kind: private
  address: 127.0.0.1:0
  routes:
  - {cmd: 1, method: /legacy.Legacy/Echo, upstream: self_grpc}
- name: grpc_in
  kind: grpc
  address: 127.0.0.1:0
  reflection: {descriptor_sets: [%q]}
  routes:
  - {method: /legacy.Legacy/Echo, cmd: %d, upstream: legacy}
upstreams:
- {name: self_grpc, protocol: grpc, endpoints: [%q]}
- {name: legacy, protocol: private, endpoints: [%q]}
`, otlp, logPath, ps, legacy.CmdEcho, harness.ListenerRef("grpc_in"), ls.Addr().String())
	mg := harness.StartMeshgate(t, cfg, harness.InDir(dir), harness.Args("-log-format", "json"), harness.WaitReady(20*time.Second))
	proc, priv, grpcIn := mg.Proc, mg.Addr("priv_in"), mg.Addr("grpc_in")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mc := testkit.LegacyClient(t, priv, legacy.ClientOptions{Conns: 1})
	harness.Eventually(t, 10*time.Second, "double bridge up", func() error {
		r, err := mc.Call(ctx, 1, 0, []byte("w"), nil)
		if err != nil {
			return err
		}
		if r.Result != 0 {
			return fmt.Errorf("result %d", r.Result)
		}
		return nil
	})
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	tp := "00-" + traceID + "-b7ad6b7169203331-01"
	if r, err := mc.Call(ctx, 1, 77, []byte("traced"), []codec.Ext{{Key: codec.ExtTraceparent, Value: []byte(tp)}}); err != nil || string(r.Body) != "traced" {
		t.Fatalf("traced call: %v %+v", err, r)
	}
	// The access log: the traced request is one line per hop.
	harness.Eventually(t, 5*time.Second, "access log lines", func() error {
		f, err := os.Open(logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		n := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				return fmt.Errorf("line %q: %v", sc.Text(), err)
			}
			if m["trace_id"] == traceID && m["uin"] == 77.0 && m["result"] == 0.0 {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d lines for the trace", n)
		}
		return nil
	})

	// Reflection lists the routed service; a gzip call goes through.
	cc := testkit.Dial(t, grpcIn)
	st, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "legacy.Legacy") {
		t.Errorf("reflection lists %v", names)
	}
	var out []byte
	body := bytes.Repeat([]byte("gz "), 2000)
	if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", body, &out, grpc.ForceCodecV2(rawcodec.Codec{}), grpc.UseCompressor("gzip")); err != nil || !bytes.Equal(out, body) {
		t.Errorf("gzip call: %v (%d bytes back)", err, len(out))
	}

	metrics, err := mg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"grpc_server_call_duration_seconds_count{", `grpc_client_attempt_duration_seconds_count{grpc_method="legacy.Legacy/Echo"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Stopping the process (SIGTERM: drain) flushes the spans it still
	// holds: the traced request's two spans, linked.
	_ = mc.Close()
	_ = cc.Close()
	proc.Stop()
	var mine []*tracepb.Span
	harness.Eventually(t, 5*time.Second, "two spans of the trace exported", func() error {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		mine = mine[:0]
		for _, s := range sink.spans {
			if hex.EncodeToString(s.TraceId) == traceID {
				mine = append(mine, s)
			}
		}
		if len(mine) != 2 {
			return fmt.Errorf("%d spans", len(mine))
		}
		return nil
	})
	a, b := mine[0], mine[1]
	if hex.EncodeToString(a.ParentSpanId) != "b7ad6b7169203331" {
		a, b = b, a
	}
	if hex.EncodeToString(a.ParentSpanId) != "b7ad6b7169203331" || !bytes.Equal(b.ParentSpanId, a.SpanId) {
		t.Errorf("span links: %x←%x, %x←%x", a.ParentSpanId, a.SpanId, b.ParentSpanId, b.SpanId)
	}

	// -log-format json: every line the process wrote is a JSON object.
	for _, l := range strings.Split(strings.TrimSpace(proc.Output()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("log line is not JSON: %q", l)
		}
	}
}
