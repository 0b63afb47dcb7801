package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/e2e/harness"
)

// interopT is the test whose goroutine runs an interop.Do* case right now.
// The interop package reports a failed case with grpclog Fatal, which would
// end the whole test binary; interopLogger turns it into t.Fatal of that
// (sub)test instead, so a failing case fails only its own subtest.
var interopT atomic.Pointer[testing.T]

// interopLogger is grpclog's default logger (errors to stderr) except that a
// Fatal while interopT is set fails that test (t.Fatal runs
// runtime.Goexit, so grpclog never reaches its os.Exit).
type interopLogger struct{ grpclog.LoggerV2 }

func (l interopLogger) fatal(msg string) {
	if t := interopT.Load(); t != nil {
		t.Fatal(msg)
	}
	l.LoggerV2.Error(msg)
}

func (l interopLogger) Fatal(args ...any)                 { l.fatal(fmt.Sprint(args...)) }
func (l interopLogger) Fatalln(args ...any)               { l.fatal(fmt.Sprintln(args...)) }
func (l interopLogger) Fatalf(format string, args ...any) { l.fatal(fmt.Sprintf(format, args...)) }

func init() {
	// Before any test starts a gRPC goroutine: SetLoggerV2 is not
	// synchronised.
	grpclog.SetLoggerV2(interopLogger{grpclog.NewLoggerV2(discard{}, discard{}, os.Stderr)})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// runInteropCase runs one interop case as subtest name; a failed check in
// the case fails that subtest.
func runInteropCase(t *testing.T, name string, fn func(t *testing.T, ctx context.Context)) {
	t.Run(name, func(t *testing.T) {
		if !interopT.CompareAndSwap(nil, t) {
			t.Fatal("interop cases must not run in parallel")
		}
		defer interopT.Store(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fn(t, ctx)
	})
}

// TestInteropUnaryThroughDoubleBridge runs grpc-go's own interop client
// cases against one real MeshGate binary routing to itself: grpc-go client
// → grpc-in (gRPC listener) → MGP over the private upstream "loop" →
// mgp-mid (MeshGate's own private listener) → gRPC upstream → grpc-go's
// interop test server. One cmd per method. The two echo metadata keys of
// custom_metadata ride as application extensions (listeners[].metadata) on
// the MGP hop; UnimplementedService is routed too, so its Unimplemented
// comes from the interop server through both bridges, not from MeshGate.
// It runs once per gRPC upstream transport (upstreams[].grpc_transport):
// grpc-go's client and MeshGate's direct HTTP/2 client (the bidi route
// keeps grpc-go in both).
func TestInteropUnaryThroughDoubleBridge(t *testing.T) {
	for _, transport := range []string{"grpc-go", "direct"} {
		t.Run(transport, func(t *testing.T) { testInteropUnaryThroughDoubleBridge(t, transport) })
	}
}

func testInteropUnaryThroughDoubleBridge(t *testing.T, transport string) {
	bin := harness.MeshgateBin(t)
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	is := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(is, interop.NewTestServer())
	go func() { _ = is.Serve(iln) }()
	t.Cleanup(is.Stop)

	admin, in, mid := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	const (
		svc   = "/grpc.testing.TestService/"
		unimp = "/grpc.testing.UnimplementedService/UnimplementedCall"
		pairs = `[{ext: 0x8001, key: x-grpc-test-echo-initial}, {ext: 0x8002, key: x-grpc-test-echo-trailing-bin, trailer: true}]`
	)
	cfg := fmt.Sprintf(`admin: {address: %[1]s}
defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: %[2]s
    metadata: %[5]s
    routes:
      - {method: %[6]sEmptyCall, cmd: 21, upstream: loop}
      - {method: %[6]sUnaryCall, cmd: 22, upstream: loop}
      - {method: %[6]sFullDuplexCall, cmd: 23, upstream: loop, stream: bidi, timeout: 10s}
      - {method: %[6]sUnimplementedCall, cmd: 24, upstream: loop}
      - {method: %[7]s, cmd: 25, upstream: loop}
  - name: mgp-mid
    kind: private
    address: %[3]s
    metadata: %[5]s
    routes:
      - {cmd: 21, method: %[6]sEmptyCall, upstream: interop}
      - {cmd: 22, method: %[6]sUnaryCall, upstream: interop}
      - {cmd: 23, method: %[6]sFullDuplexCall, upstream: interop, stream: bidi}
      - {cmd: 24, method: %[6]sUnimplementedCall, upstream: interop}
      - {cmd: 25, method: %[7]s, upstream: interop}
upstreams:
  - {name: loop, protocol: private, endpoints: [%[3]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[4]q], grpc_transport: %[8]s}
`, admin, in, mid, iln.Addr().String(), pairs, svc, unimp, transport)
	path := harness.WriteFile(t, t.TempDir(), "meshgate.yaml", []byte(cfg))
	harness.Start(t, "meshgate", bin, "run", "-c", path)
	harness.WaitHTTP200(t, 20*time.Second, "http://"+admin+"/readyz") // both upstreams connected, the self-loop too

	cc, err := grpc.NewClient(in, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)

	runInteropCase(t, "empty_unary", func(t *testing.T, ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc) })
	runInteropCase(t, "large_unary", func(t *testing.T, ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc) })
	runInteropCase(t, "status_code_and_message", func(t *testing.T, ctx context.Context) { interop.DoStatusCodeAndMessage(ctx, tc) })
	runInteropCase(t, "special_status_message", func(t *testing.T, ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc) })
	// Unary and FullDuplexCall halves: before metadata pairs were carried on
	// stream exchanges, the stream half failed ("Expected exactly one header
	// from server. Received 0").
	runInteropCase(t, "custom_metadata", func(t *testing.T, ctx context.Context) { interop.DoCustomMetadata(ctx, tc) })
	runInteropCase(t, "unimplemented_method", func(t *testing.T, ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) })
	runInteropCase(t, "unimplemented_service", func(t *testing.T, ctx context.Context) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
	})
	runInteropCase(t, "timeout_on_sleeping_server", func(t *testing.T, ctx context.Context) { interop.DoTimeoutOnSleepingServer(ctx, tc) })
}

// TestInteropCustomMetadataThroughPassthrough runs interop custom_metadata
// (unary and FullDuplexCall) through a private → private passthrough hop
// between the two bridges: grpc-in → (MGP) mgp-mid → (MGP, passthrough)
// mgp-end → (gRPC) interop server. The metadata pairs are configured on
// grpc-in and mgp-end only; mgp-mid passes the extensions as they are,
// request and reply frames alike.
func TestInteropCustomMetadataThroughPassthrough(t *testing.T) {
	bin := harness.MeshgateBin(t)
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	is := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(is, interop.NewTestServer())
	go func() { _ = is.Serve(iln) }()
	t.Cleanup(is.Stop)

	admin, in, mid, end := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	const (
		svc   = "/grpc.testing.TestService/"
		pairs = `[{ext: 0x8001, key: x-grpc-test-echo-initial}, {ext: 0x8002, key: x-grpc-test-echo-trailing-bin, trailer: true}]`
	)
	cfg := fmt.Sprintf(`admin: {address: %[1]s}
defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: %[2]s
    metadata: %[6]s
    routes:
      - {method: %[7]sUnaryCall, cmd: 22, upstream: to-mid}
      - {method: %[7]sFullDuplexCall, cmd: 23, upstream: to-mid, stream: bidi, timeout: 10s}
  - name: mgp-mid
    kind: private
    address: %[3]s
    routes:
      - {cmd: 22, upstream: to-end}
      - {cmd: 23, upstream: to-end, stream: bidi}
  - name: mgp-end
    kind: private
    address: %[4]s
    metadata: %[6]s
    routes:
      - {cmd: 22, method: %[7]sUnaryCall, upstream: interop}
      - {cmd: 23, method: %[7]sFullDuplexCall, upstream: interop, stream: bidi}
upstreams:
  - {name: to-mid, protocol: private, endpoints: [%[3]q], connections: 1}
  - {name: to-end, protocol: private, endpoints: [%[4]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[5]q]}
`, admin, in, mid, end, iln.Addr().String(), pairs, svc)
	path := harness.WriteFile(t, t.TempDir(), "meshgate.yaml", []byte(cfg))
	harness.Start(t, "meshgate", bin, "run", "-c", path)
	harness.WaitHTTP200(t, 20*time.Second, "http://"+admin+"/readyz")

	cc, err := grpc.NewClient(in, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	runInteropCase(t, "custom_metadata", func(t *testing.T, ctx context.Context) { interop.DoCustomMetadata(ctx, tc) })
}
