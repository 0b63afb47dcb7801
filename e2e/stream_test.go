package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/e2e/harness"
)

// TestInteropStreamsThroughDoubleBridge runs grpc-go's interop streaming
// cases against one real MeshGate routing to itself: gRPC listener → MGP
// stream exchange (MORE/CANCEL frames) over a private upstream → its own
// private listener → gRPC stream call to grpc-go's interop test server.
// Before streams every one of them failed with INTERNAL "cardinality
// violation" at the gRPC listener.
func TestInteropStreamsThroughDoubleBridge(t *testing.T) {
	bin := harness.MeshgateBin(t)
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	is := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(is, interop.NewTestServer())
	go is.Serve(iln)
	t.Cleanup(is.Stop)

	admin, in, mid := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	const svc = "/grpc.testing.TestService/"
	cfg := fmt.Sprintf(`admin: {address: %s}
listeners:
  - name: grpc-in
    kind: grpc
    address: %s
    routes:
      - {method: %sStreamingOutputCall, cmd: 11, upstream: loop, stream: server, timeout: 10s}
      - {method: %sStreamingInputCall, cmd: 12, upstream: loop, stream: client, timeout: 10s}
      - {method: %sFullDuplexCall, cmd: 13, upstream: loop, stream: bidi, timeout: 10s}
  - name: mgp-mid
    kind: private
    address: %s
    routes:
      - {cmd: 11, method: %sStreamingOutputCall, upstream: interop, stream: server}
      - {cmd: 12, method: %sStreamingInputCall, upstream: interop, stream: client}
      - {cmd: 13, method: %sFullDuplexCall, upstream: interop, stream: bidi}
upstreams:
  - {name: loop, protocol: private, endpoints: [%q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%q]}
`, admin, in, svc, svc, svc, mid, svc, svc, svc, mid, iln.Addr().String())
	path := harness.WriteFile(t, t.TempDir(), "meshgate.yaml", []byte(cfg))
	harness.Start(t, "meshgate", bin, "run", "-c", path)
	harness.WaitHTTP200(t, 20*time.Second, "http://"+admin+"/readyz")

	cc, err := grpc.NewClient(in, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	for _, c := range []struct {
		name string
		fn   func(context.Context, testgrpc.TestServiceClient, ...grpc.CallOption)
	}{
		{"server_streaming", interop.DoServerStreaming},
		{"client_streaming", interop.DoClientStreaming},
		{"ping_pong", interop.DoPingPong},
		{"empty_stream", interop.DoEmptyStream},
		{"cancel_after_begin", interop.DoCancelAfterBegin},
		{"cancel_after_first_response", interop.DoCancelAfterFirstResponse},
		{"timeout_on_sleeping_server", interop.DoTimeoutOnSleepingServer},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c.fn(ctx, tc) // fails the process (grpclog.Fatal) on a mismatch
		})
	}
}
