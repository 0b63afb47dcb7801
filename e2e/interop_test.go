package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/e2e/harness"
)

// Every test here runs grpc-go's interop client cases through one real
// MeshGate binary against grpc-go's interop test server, each time by a
// different chain of listeners and upstreams; self-loop upstreams name the
// instance's own listeners with harness.ListenerRef.

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

// runStreamingCases runs the interop streaming cases against tc.
func runStreamingCases(t *testing.T, tc testgrpc.TestServiceClient) {
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
		runInteropCase(t, c.name, func(t *testing.T, ctx context.Context) { c.fn(ctx, tc) })
	}
}

// TestInteropUnaryThroughDoubleBridge runs grpc-go's own interop client
// cases against one real MeshGate binary routing to itself: grpc-go client
// → grpc-in (gRPC listener) → MGP over the private upstream "loop" →
// mgp-mid (MeshGate's own private listener) → gRPC upstream → grpc-go's
// interop test server. One cmd per method. The two echo metadata keys of
// custom_metadata ride as application extensions (listeners[].metadata) on
// the MGP hop; UnimplementedService is routed too, so its Unimplemented
// comes from the interop server through both bridges, not from MeshGate.
func TestInteropUnaryThroughDoubleBridge(t *testing.T) {
	is := harness.InteropServer(t)
	const (
		svc   = "/grpc.testing.TestService/"
		unimp = "/grpc.testing.UnimplementedService/UnimplementedCall"
		pairs = `[{ext: 0x8001, key: x-grpc-test-echo-initial}, {ext: 0x8002, key: x-grpc-test-echo-trailing-bin, trailer: true}]`
	)
	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    metadata: %[3]s
    routes:
      - {method: %[4]sEmptyCall, cmd: 21, upstream: loop}
      - {method: %[4]sUnaryCall, cmd: 22, upstream: loop}
      - {method: %[4]sFullDuplexCall, cmd: 23, upstream: loop, stream: bidi, timeout: 10s}
      - {method: %[4]sUnimplementedCall, cmd: 24, upstream: loop}
      - {method: %[5]s, cmd: 25, upstream: loop}
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
upstreams:
  - {name: loop, protocol: private, endpoints: [%[1]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[2]q]}
`, harness.ListenerRef("mgp-mid"), is, pairs, svc, unimp)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second)) // both upstreams connected, the self-loop too

	cc := harness.DialGRPC(t, mg.Addr("grpc-in"))
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
	is := harness.InteropServer(t)
	const (
		svc   = "/grpc.testing.TestService/"
		pairs = `[{ext: 0x8001, key: x-grpc-test-echo-initial}, {ext: 0x8002, key: x-grpc-test-echo-trailing-bin, trailer: true}]`
	)
	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    metadata: %[4]s
    routes:
      - {method: %[5]sUnaryCall, cmd: 22, upstream: to-mid}
      - {method: %[5]sFullDuplexCall, cmd: 23, upstream: to-mid, stream: bidi, timeout: 10s}
  - name: mgp-mid
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 22, upstream: to-end}
      - {cmd: 23, upstream: to-end, stream: bidi}
  - name: mgp-end
    kind: private
    address: 127.0.0.1:0
    metadata: %[4]s
    routes:
      - {cmd: 22, method: %[5]sUnaryCall, upstream: interop}
      - {cmd: 23, method: %[5]sFullDuplexCall, upstream: interop, stream: bidi}
upstreams:
  - {name: to-mid, protocol: private, endpoints: [%[1]q], connections: 1}
  - {name: to-end, protocol: private, endpoints: [%[2]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[3]q]}
`, harness.ListenerRef("mgp-mid"), harness.ListenerRef("mgp-end"), is, pairs, svc)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))

	cc := harness.DialGRPC(t, mg.Addr("grpc-in"))
	tc := testgrpc.NewTestServiceClient(cc)
	runInteropCase(t, "custom_metadata", func(t *testing.T, ctx context.Context) { interop.DoCustomMetadata(ctx, tc) })
}

// TestInteropStreamsThroughDoubleBridge runs grpc-go's interop streaming
// cases against one real MeshGate routing to itself: gRPC listener → MGP
// stream exchange (MORE/CANCEL frames) over a private upstream → its own
// private listener → gRPC stream call to grpc-go's interop test server.
// Before streams every one of them failed with INTERNAL "cardinality
// violation" at the gRPC listener.
func TestInteropStreamsThroughDoubleBridge(t *testing.T) {
	is := harness.InteropServer(t)
	const svc = "/grpc.testing.TestService/"
	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: %[1]sStreamingOutputCall, cmd: 11, upstream: loop, stream: server, timeout: 10s}
      - {method: %[1]sStreamingInputCall, cmd: 12, upstream: loop, stream: client, timeout: 10s}
      - {method: %[1]sFullDuplexCall, cmd: 13, upstream: loop, stream: bidi, timeout: 10s}
  - name: mgp-mid
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 11, method: %[1]sStreamingOutputCall, upstream: interop, stream: server}
      - {cmd: 12, method: %[1]sStreamingInputCall, upstream: interop, stream: client}
      - {cmd: 13, method: %[1]sFullDuplexCall, upstream: interop, stream: bidi}
upstreams:
  - {name: loop, protocol: private, endpoints: [%[2]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[3]q]}
`, svc, harness.ListenerRef("mgp-mid"), is)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))
	runStreamingCases(t, testgrpc.NewTestServiceClient(harness.DialGRPC(t, mg.Addr("grpc-in"))))
}

// TestInteropStreamsThroughEveryPath runs grpc-go's interop streaming cases
// through all four listener → upstream paths of one real MeshGate, chained:
// gRPC → gRPC (grpc-pass proxies the stream call to grpc-in), gRPC →
// private (grpc-in sends MGP stream exchanges to mgp-mid), private →
// private (mgp-mid passes each exchange to mgp-end with its own seq),
// private → gRPC (mgp-end calls grpc-go's interop test server).
func TestInteropStreamsThroughEveryPath(t *testing.T) {
	is := harness.InteropServer(t)
	routes := func(format string) string {
		var b strings.Builder
		for i, m := range []struct{ name, kind string }{{"StreamingOutputCall", "server"}, {"StreamingInputCall", "client"}, {"FullDuplexCall", "bidi"}} {
			fmt.Fprintf(&b, format, "/grpc.testing.TestService/"+m.name, 11+i, m.kind)
		}
		return b.String()
	}
	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners:
  - name: grpc-pass
    kind: grpc
    address: 127.0.0.1:0
    routes:
%s  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    routes:
%s  - name: mgp-mid
    kind: private
    address: 127.0.0.1:0
    routes:
%s  - name: mgp-end
    kind: private
    address: 127.0.0.1:0
    routes:
%supstreams:
  - {name: to-grpc-in, protocol: grpc, endpoints: [%q]}
  - {name: to-mid, protocol: private, endpoints: [%q], connections: 1}
  - {name: to-end, protocol: private, endpoints: [%q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%q]}
`,
		routes("      - {method: %[1]s, upstream: to-grpc-in, stream: %[3]s, timeout: 10s}\n"),
		routes("      - {method: %[1]s, cmd: %[2]d, upstream: to-mid, stream: %[3]s, timeout: 10s}\n"),
		routes("      - {cmd: %[2]d, upstream: to-end, stream: %[3]s}\n"),
		routes("      - {cmd: %[2]d, method: %[1]s, upstream: interop, stream: %[3]s}\n"),
		harness.ListenerRef("grpc-in"), harness.ListenerRef("mgp-mid"), harness.ListenerRef("mgp-end"), is)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second)) // every upstream connected, the self-loops too
	runStreamingCases(t, testgrpc.NewTestServiceClient(harness.DialGRPC(t, mg.Addr("grpc-pass"))))
}
