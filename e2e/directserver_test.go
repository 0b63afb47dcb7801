package e2e

import (
	"context"
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
	mg := startDoubleBridge(t, "", "") // grpc-in on the default transport: direct

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
	testkit.Receive(t, mg.Done(), 10*time.Second, "meshgate did not exit within drain_timeout (+ slack) with a Watch open")
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
