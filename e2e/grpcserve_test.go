package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestInteropUnaryDirectServer runs grpc-go's interop unary cases against
// the real binary's gRPC listener on the direct HTTP/2 server transport
// (listeners[].grpc_transport: direct): grpc-go client → grpc-in (direct)
// → MGP over the private upstream "loop" → mgp-mid (MeshGate's own private
// listener) → gRPC upstream → grpc-go's interop test server. The health
// service's Check answers on the direct listener; Watch (streaming) is
// UNIMPLEMENTED there. (status_code_and_message and
// timeout_on_sleeping_server need FullDuplexCall: streaming, not served
// by this transport.)
func TestInteropUnaryDirectServer(t *testing.T) {
	is := interopServer(t)
	const svc, unimp = interopSvc, "/grpc.testing.UnimplementedService/UnimplementedCall"
	cfg := fmt.Sprintf(`defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    grpc_transport: direct
    routes:
      - {method: %[3]sEmptyCall, cmd: 21, upstream: loop}
      - {method: %[3]sUnaryCall, cmd: 22, upstream: loop}
      - {method: %[4]s, cmd: 25, upstream: loop}
  - name: mgp-mid
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 21, method: %[3]sEmptyCall, upstream: interop}
      - {cmd: 22, method: %[3]sUnaryCall, upstream: interop}
      - {cmd: 25, method: %[4]s, upstream: interop}
upstreams:
  - {name: loop, protocol: private, endpoints: [%[1]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[2]q]}
`, harness.ListenerRef("mgp-mid"), is, svc, unimp)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))

	cc := testkit.Dial(t, mg.Addr("grpc-in"))
	tc := testgrpc.NewTestServiceClient(cc)
	runInteropCase(t, "empty_unary", func(t *testing.T, ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc) })
	runInteropCase(t, "large_unary", func(t *testing.T, ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc) })
	runInteropCase(t, "large_unary_gzip", func(t *testing.T, ctx context.Context) {
		interop.DoLargeUnaryCall(ctx, tc, grpc.UseCompressor(gzip.Name))
	})
	runInteropCase(t, "special_status_message", func(t *testing.T, ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc) })
	runInteropCase(t, "unimplemented_method", func(t *testing.T, ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) })
	runInteropCase(t, "unimplemented_service", func(t *testing.T, ctx context.Context) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
	})

	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check: %v %v", resp, err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("health Watch: %v", err)
	}
}
