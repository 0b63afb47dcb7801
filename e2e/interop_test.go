package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
)

// Every test here runs grpc-go's interop client cases through one real
// MeshGate binary against grpc-go's interop test server, each time by a
// different chain of listeners and upstreams; self-loop upstreams name the
// instance's own listeners with harness.ListenerRef.

func init() { testkit.InstallInteropLogger() }

const (
	// interopSvc prefixes the interop TestService's methods.
	interopSvc = "/grpc.testing.TestService/"
	// echoPairs (listeners[].metadata) carries custom_metadata's two echo
	// keys as application extensions over MGP.
	echoPairs = `[{ext: 0x8001, key: x-grpc-test-echo-initial}, {ext: 0x8002, key: x-grpc-test-echo-trailing-bin, trailer: true}]`
)

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
		testkit.RunInteropCase(t, c.name, func(t *testing.T, ctx context.Context) { c.fn(ctx, tc) })
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
// It runs once per gRPC upstream transport (upstreams[].grpc_transport):
// grpc-go's client and MeshGate's direct HTTP/2 client (the bidi route
// keeps grpc-go in both).
func TestInteropUnaryThroughDoubleBridge(t *testing.T) {
	// Each transport on both sides: the grpc listener's server
	// (listeners[].grpc_transport) and the gRPC upstream's client.
	for _, transport := range []string{"grpc-go", "direct"} {
		t.Run(transport, func(t *testing.T) { testInteropUnaryThroughDoubleBridge(t, transport) })
	}
}

func testInteropUnaryThroughDoubleBridge(t *testing.T, transport string) {
	mg := startDoubleBridge(t, transport, transport)

	cc := testkit.Dial(t, mg.Addr("grpc-in"))
	tc := testgrpc.NewTestServiceClient(cc)

	testkit.RunInteropCase(t, "empty_unary", func(t *testing.T, ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc) })
	testkit.RunInteropCase(t, "large_unary", func(t *testing.T, ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc) })
	testkit.RunInteropCase(t, "status_code_and_message", func(t *testing.T, ctx context.Context) { interop.DoStatusCodeAndMessage(ctx, tc) })
	testkit.RunInteropCase(t, "special_status_message", func(t *testing.T, ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc) })
	// Unary and FullDuplexCall halves: before metadata pairs were carried on
	// stream exchanges, the stream half failed ("Expected exactly one header
	// from server. Received 0").
	testkit.RunInteropCase(t, "custom_metadata", func(t *testing.T, ctx context.Context) { interop.DoCustomMetadata(ctx, tc) })
	testkit.RunInteropCase(t, "unimplemented_method", func(t *testing.T, ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) })
	testkit.RunInteropCase(t, "unimplemented_service", func(t *testing.T, ctx context.Context) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
	})
	testkit.RunInteropCase(t, "timeout_on_sleeping_server", func(t *testing.T, ctx context.Context) { interop.DoTimeoutOnSleepingServer(ctx, tc) })
}

// TestInteropCustomMetadataThroughPassthrough runs interop custom_metadata
// (unary and FullDuplexCall) through a private → private passthrough hop
// between the two bridges: grpc-in → (MGP) mgp-mid → (MGP, passthrough)
// mgp-end → (gRPC) interop server. The metadata pairs are configured on
// grpc-in and mgp-end only; mgp-mid passes the extensions as they are,
// request and reply frames alike.
func TestInteropCustomMetadataThroughPassthrough(t *testing.T) {
	is := interopServer(t)
	const svc, pairs = interopSvc, echoPairs
	cfg := fmt.Sprintf(`defaults: {drain_timeout: 1s}
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

	cc := testkit.Dial(t, mg.Addr("grpc-in"))
	tc := testgrpc.NewTestServiceClient(cc)
	testkit.RunInteropCase(t, "custom_metadata", func(t *testing.T, ctx context.Context) { interop.DoCustomMetadata(ctx, tc) })
}

// TestInteropStreamsThroughDoubleBridge runs grpc-go's interop streaming
// cases against one real MeshGate routing to itself: gRPC listener → MGP
// stream exchange (MORE/CANCEL frames) over a private upstream → its own
// private listener → gRPC stream call to grpc-go's interop test server.
// Before streams every one of them failed with INTERNAL "cardinality
// violation" at the gRPC listener.
func TestInteropStreamsThroughDoubleBridge(t *testing.T) {
	is := interopServer(t)
	const svc = interopSvc
	cfg := fmt.Sprintf(`listeners:
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
	runStreamingCases(t, testgrpc.NewTestServiceClient(testkit.Dial(t, mg.Addr("grpc-in"))))
}

// TestInteropStreamsThroughEveryPath runs grpc-go's interop streaming cases
// through all four listener → upstream paths of one real MeshGate, chained:
// gRPC → gRPC (grpc-pass proxies the stream call to grpc-in), gRPC →
// private (grpc-in sends MGP stream exchanges to mgp-mid), private →
// private (mgp-mid passes each exchange to mgp-end with its own seq),
// private → gRPC (mgp-end calls grpc-go's interop test server).
func TestInteropStreamsThroughEveryPath(t *testing.T) {
	is := interopServer(t)
	routes := func(format string) string {
		var b strings.Builder
		for i, m := range []struct{ name, kind string }{{"StreamingOutputCall", "server"}, {"StreamingInputCall", "client"}, {"FullDuplexCall", "bidi"}} {
			fmt.Fprintf(&b, format, interopSvc+m.name, 11+i, m.kind)
		}
		return b.String()
	}
	cfg := fmt.Sprintf(`listeners:
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
	runStreamingCases(t, testgrpc.NewTestServiceClient(testkit.Dial(t, mg.Addr("grpc-pass"))))
}

// streamServer is a legacy server with two server-stream commands: cmd 21
// floods (count messages of size bytes), cmd 22 sends three small ones. It
// records the seqs it gets a CANCEL for.
type streamServer struct {
	ln          net.Listener
	count, size int
	cancels     chan uint32
}

func newStreamServer(t *testing.T, count, size int) *streamServer {
	s := &streamServer{ln: testkit.Listen(t, "127.0.0.1:0"), count: count, size: size, cancels: make(chan uint32, 16)}
	testkit.ServeConns(t, s.ln, s.serve)
	return s
}

func (s *streamServer) serve(nc net.Conn) {
	c := mgp.New(0)
	var wmu sync.Mutex
	write := func(f *codec.Frame) error {
		b, _ := c.Append(nil, f)
		wmu.Lock()
		defer wmu.Unlock()
		_, err := nc.Write(b)
		return err
	}
	rd := codec.NewReader(nc, c, 4096)
	var f codec.Frame
	for rd.ReadFrame(&f) == nil {
		switch {
		case f.Flags&codec.FlagHeartbeat != 0:
			if f.Flags&codec.FlagResponse == 0 {
				write(&codec.Frame{Seq: f.Seq, Flags: codec.FlagHeartbeat | codec.FlagResponse})
			}
		case f.Flags&codec.FlagCancel != 0:
			s.cancels <- f.Seq
		case f.Cmd == 21 && f.Flags&codec.FlagMore == 0:
			cmd, seq := f.Cmd, f.Seq
			go func() { // the flood, on its own goroutine: the connection keeps reading
				body := make([]byte, s.size)
				for range s.count {
					if write(&codec.Frame{Cmd: cmd, Seq: seq, Flags: codec.FlagResponse | codec.FlagMore, Body: body}) != nil {
						return
					}
				}
				write(&codec.Frame{Cmd: cmd, Seq: seq, Flags: codec.FlagResponse})
			}()
		case f.Cmd == 22 && f.Flags&codec.FlagMore == 0:
			for i := range 3 {
				write(&codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse | codec.FlagMore, Body: []byte(fmt.Sprint(i))})
			}
			write(&codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse})
		}
	}
}

// TestSlowStreamConsumerDoesNotStallOthers: a gRPC client opens a stream
// that the legacy server floods (100,000 × 1 KiB) and stops reading after
// the first message. On the same upstream connection another client's
// stream completes at once; the flooded exchange is cut at its buffer
// bound (MeshGate sends CANCEL upstream instead of buffering 100 MB) and
// the slow client's call ends with RESOURCE_EXHAUSTED.
func TestSlowStreamConsumerDoesNotStallOthers(t *testing.T) {
	legacy := newStreamServer(t, 100000, 1024)
	cfg := fmt.Sprintf(`listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: /test.S/Flood, cmd: 21, upstream: legacy, stream: server, timeout: 30s}
      - {method: /test.S/Small, cmd: 22, upstream: legacy, stream: server, timeout: 30s}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 1}
`, legacy.ln.Addr().String())
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))
	dial := func() *grpc.ClientConn { return testkit.Client(t, mg.Addr("grpc-in")) }
	desc := &grpc.StreamDesc{ServerStreams: true}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	slow, err := dial().NewStream(ctx, desc, "/test.S/Flood")
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.SendMsg([]byte("go")); err != nil {
		t.Fatal(err)
	}
	slow.CloseSend()
	var first []byte
	if err := slow.RecvMsg(&first); err != nil || len(first) != 1024 {
		t.Fatalf("first flood message: %d bytes, %v", len(first), err)
	}
	// The slow client reads nothing more. Its exchange is cut at the bound.
	testkit.Receive(t, legacy.cancels, 20*time.Second, "no CANCEL upstream: the flooded exchange was not bounded")

	start := time.Now()
	fast, err := dial().NewStream(ctx, desc, "/test.S/Small")
	if err != nil {
		t.Fatal(err)
	}
	fast.SendMsg([]byte("hi"))
	fast.CloseSend()
	var got []string
	for {
		var b []byte
		err := fast.RecvMsg(&b)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("fast stream: %v", err)
		}
		got = append(got, string(b))
	}
	if len(got) != 3 || time.Since(start) > 5*time.Second {
		t.Fatalf("fast stream on the same upstream connection: %q in %v", got, time.Since(start))
	}

	// The slow client, reading again, drains what was buffered and learns
	// its stream was cut (result 6 → RESOURCE_EXHAUSTED).
	n := 1
	for {
		var b []byte
		err := slow.RecvMsg(&b)
		if err == nil {
			n++
			continue
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("slow stream ended with %v after %d messages", err, n)
		}
		break
	}
	if n >= 100000 {
		t.Fatalf("slow stream got all %d messages: nothing was bounded", n)
	}
	t.Logf("slow stream cut after %d of 100000 messages", n)
}

// startDoubleBridge starts the double bridge of the interop tests: grpc-go
// client → grpc-in (gRPC listener) → MGP over the private upstream "loop"
// → mgp-mid (MeshGate's own private listener) → gRPC upstream "interop" →
// grpc-go's interop test server. listener and upstream are the
// grpc_transport of grpc-in and of "interop" ("": the default). One cmd
// per method, the streaming ones as stream routes; custom_metadata's echo
// keys ride as application extensions (listeners[].metadata) on the MGP
// hop.
func startDoubleBridge(t *testing.T, listener, upstream string) *harness.Meshgate {
	t.Helper()
	is := interopServer(t)
	const svc, unimp, pairs = interopSvc, "/grpc.testing.UnimplementedService/UnimplementedCall", echoPairs
	lt, ut := "", ""
	if listener != "" {
		lt = "\n    grpc_transport: " + listener
	}
	if upstream != "" {
		ut = ", grpc_transport: " + upstream
	}
	cfg := fmt.Sprintf(`defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0%[7]s
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
  - {name: interop, protocol: grpc, endpoints: [%[2]q]%[6]s}
`, harness.ListenerRef("mgp-mid"), is, pairs, svc, unimp, ut, lt)
	return harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second)) // both upstreams connected, the self-loop too
}
