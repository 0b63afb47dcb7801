package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestInteropDirectServer runs grpc-go's interop client's full case list
// against the real binary's gRPC listener on the direct HTTP/2 server
// transport (listeners[].grpc_transport: direct, the default): grpc-go
// client → grpc-in (direct) → MGP over the private upstream "loop" →
// mgp-mid (MeshGate's own private listener) → gRPC upstream → grpc-go's
// interop test server. Unary routes are served on the transport's fast
// path; the stream routes, the health service's Watch and unknown methods
// are delegated to the listener's grpc-go server on the same connection.
// Then the binary drains (SIGTERM): the open Watch receives NOT_SERVING.
// Before delegation every streaming case failed (config validation
// rejected stream routes with this transport; Watch was UNIMPLEMENTED).
func TestInteropDirectServer(t *testing.T) {
	is := interopServer(t)
	const svc, unimp, pairs = interopSvc, "/grpc.testing.UnimplementedService/UnimplementedCall", echoPairs
	cfg := fmt.Sprintf(`defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    grpc_transport: direct
    metadata: %[3]s
    routes:
      - {method: %[4]sEmptyCall, cmd: 21, upstream: loop}
      - {method: %[4]sUnaryCall, cmd: 22, upstream: loop}
      - {method: %[4]sFullDuplexCall, cmd: 23, upstream: loop, stream: bidi, timeout: 10s}
      - {method: %[4]sUnimplementedCall, cmd: 24, upstream: loop}
      - {method: %[5]s, cmd: 25, upstream: loop}
      - {method: %[4]sStreamingOutputCall, cmd: 11, upstream: loop, stream: server, timeout: 10s}
      - {method: %[4]sStreamingInputCall, cmd: 12, upstream: loop, stream: client, timeout: 10s}
  - name: mgp-mid
    kind: private
    address: 127.0.0.1:0
    metadata: %[3]s
    routes:
      - {cmd: 21, method: %[4]sEmptyCall, upstream: interop}
      - {cmd: 22, method: %[4]sUnaryCall, upstream: interop}
      - {cmd: 23, method: %[4]sFullDuplexCall, upstream: interop, stream: bidi}
      - {cmd: 24, method: %[4]sUnimplementedCall, upstream: interop}
      - {cmd: 25, method: %[5]s, upstream: interop}
      - {cmd: 11, method: %[4]sStreamingOutputCall, upstream: interop, stream: server}
      - {cmd: 12, method: %[4]sStreamingInputCall, upstream: interop, stream: client}
upstreams:
  - {name: loop, protocol: private, endpoints: [%[1]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[2]q]}
`, harness.ListenerRef("mgp-mid"), is, pairs, svc, unimp)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))

	cc := testkit.Dial(t, mg.Addr("grpc-in"))
	tc := testgrpc.NewTestServiceClient(cc)
	for _, c := range testkit.InteropCases(tc, cc) {
		testkit.RunInteropCase(t, c.Name, func(_ *testing.T, ctx context.Context) { c.Run(ctx) })
	}

	// Health: Check on the fast path, Watch delegated; the drain turns it
	// NOT_SERVING on the open stream.
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check: %v %v", resp, err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch: %v %v", r, err)
	}
	if err := mg.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health Watch after SIGTERM: %v %v", r, err)
	}
	select {
	case <-mg.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("meshgate did not exit within drain_timeout (+ slack) with a Watch open")
	}
}

// TestDirectServerReflectionGrpcurl: grpcurl, knowing only the address,
// lists and describes the services of a direct-transport listener through
// MeshGate's reflection service (a bidi stream, delegated to the
// listener's grpc-go server), then calls legacy.Legacy/Echo with a JSON
// body it encodes from what reflection told it (a unary route: the fast
// path).
func TestDirectServerReflectionGrpcurl(t *testing.T) {
	grpcurl := harness.Tool(t, "grpcurl")
	mg := startReflectionEcho(t) // the default grpc_transport: direct
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, grpcurl, append([]string{"-plaintext", "-max-time", "10"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	addr := mg.Addr("grpc-in")
	if out := run(addr, "list"); !strings.Contains(out, "legacy.Legacy") || !strings.Contains(out, "grpc.health.v1.Health") {
		t.Fatalf("grpcurl list:\n%s", out)
	}
	if out := run(addr, "describe", "legacy.Legacy"); !strings.Contains(out, "rpc Echo") {
		t.Fatalf("grpcurl describe legacy.Legacy:\n%s", out)
	}
	if out := run("-d", `{"text":"via grpcurl"}`, addr, "legacy.Legacy/Echo"); !strings.Contains(out, "via grpcurl") {
		t.Fatalf("grpcurl call:\n%s", out)
	}
}
