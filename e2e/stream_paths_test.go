package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/e2e/harness"
)

// TestInteropStreamsThroughEveryPath runs grpc-go's interop streaming cases
// through all four listener → upstream paths of one real MeshGate, chained:
// gRPC → gRPC (grpc-pass proxies the stream call to grpc-in), gRPC →
// private (grpc-in sends MGP stream exchanges to mgp-mid), private →
// private (mgp-mid passes each exchange to mgp-end with its own seq),
// private → gRPC (mgp-end calls grpc-go's interop test server).
func TestInteropStreamsThroughEveryPath(t *testing.T) {
	bin := harness.MeshgateBin(t)
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	is := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(is, interop.NewTestServer())
	go is.Serve(iln)
	t.Cleanup(is.Stop)

	admin, pass, in, mid, end := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	routes := func(format string) string {
		var b strings.Builder
		for i, m := range []struct{ name, kind string }{{"StreamingOutputCall", "server"}, {"StreamingInputCall", "client"}, {"FullDuplexCall", "bidi"}} {
			fmt.Fprintf(&b, format, "/grpc.testing.TestService/"+m.name, 11+i, m.kind)
		}
		return b.String()
	}
	cfg := fmt.Sprintf(`admin: {address: %s}
listeners:
  - name: grpc-pass
    kind: grpc
    address: %s
    routes:
%s  - name: grpc-in
    kind: grpc
    address: %s
    routes:
%s  - name: mgp-mid
    kind: private
    address: %s
    routes:
%s  - name: mgp-end
    kind: private
    address: %s
    routes:
%supstreams:
  - {name: to-grpc-in, protocol: grpc, endpoints: [%q]}
  - {name: to-mid, protocol: private, endpoints: [%q], connections: 1}
  - {name: to-end, protocol: private, endpoints: [%q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%q]}
`, admin,
		pass, routes("      - {method: %[1]s, upstream: to-grpc-in, stream: %[3]s, timeout: 10s}\n"),
		in, routes("      - {method: %[1]s, cmd: %[2]d, upstream: to-mid, stream: %[3]s, timeout: 10s}\n"),
		mid, routes("      - {cmd: %[2]d, upstream: to-end, stream: %[3]s}\n"),
		end, routes("      - {cmd: %[2]d, method: %[1]s, upstream: interop, stream: %[3]s}\n"),
		in, mid, end, iln.Addr().String())
	path := harness.WriteFile(t, t.TempDir(), "meshgate.yaml", []byte(cfg))
	harness.Start(t, "meshgate", bin, "run", "-c", path)
	harness.WaitHTTP200(t, 20*time.Second, "http://"+admin+"/readyz") // every upstream connected, the self-loops too
	for _, a := range []string{pass, in, mid, end} {
		harness.WaitTCP(t, 10*time.Second, a)
	}

	cc, err := grpc.NewClient(pass, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
