package runtime

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// payloadStats records the client's outgoing payload sizes.
type payloadStats struct {
	mu  sync.Mutex
	out []*stats.OutPayload
}

func (p *payloadStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (p *payloadStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (p *payloadStats) HandleConn(context.Context, stats.ConnStats)                       {}
func (p *payloadStats) HandleRPC(_ context.Context, s stats.RPCStats) {
	if o, ok := s.(*stats.OutPayload); ok && o.Client {
		p.mu.Lock()
		p.out = append(p.out, o)
		p.mu.Unlock()
	}
}

// TestGzipCallEndToEnd: a gzip-compressed gRPC call through the grpc
// listener reaches the legacy server as the plain body and comes back;
// messages over listeners[].max_recv_msg_size are refused with
// RESOURCE_EXHAUSTED.
func TestGzipCallEndToEnd(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	_, lAddr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(f *codec.Frame) {
		mu.Lock()
		bodies = append(bodies, bytes.Clone(f.Body))
		mu.Unlock()
	}})
	y := strings.Replace(grpcConfig(lAddr, backend(t, "A")), "kind: grpc\n", "kind: grpc\n    max_recv_msg_size: 65536\n", 1)
	rt := startReady(t, mustParse(t, y))

	ps := &payloadStats{}
	cc := testkit.Client(t, rt.Addr("grpc-in").String(), grpc.WithStatsHandler(ps))
	ctx := testkit.Context(t, 5*time.Second)
	body := bytes.Repeat([]byte("compress me "), 1000) // 12 000 bytes
	var out []byte
	if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", body, &out, grpc.UseCompressor("gzip")); err != nil {
		t.Fatalf("gzip call: %v", err)
	}
	if !bytes.Equal(out, body) {
		t.Fatalf("reply %d bytes, want the %d sent", len(out), len(body))
	}
	mu.Lock()
	if len(bodies) != 1 || !bytes.Equal(bodies[0], body) {
		t.Errorf("legacy server got %d bodies, want the plain %d-byte body", len(bodies), len(body))
	}
	mu.Unlock()
	ps.mu.Lock()
	if len(ps.out) != 1 || ps.out[0].CompressedLength >= ps.out[0].Length {
		t.Errorf("request not compressed on the wire: %+v", ps.out)
	}
	ps.mu.Unlock()

	// Over the listener's limit (compressed or not): RESOURCE_EXHAUSTED.
	big := bytes.Repeat([]byte{'x'}, 70000)
	err := cc.Invoke(ctx, "/legacy.Legacy/Echo", big, &out)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("message over max_recv_msg_size: %v", err)
	}
	err = cc.Invoke(ctx, "/legacy.Legacy/Echo", big, &out, grpc.UseCompressor("gzip"))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("compressed message over max_recv_msg_size: %v", err)
	}
	// A reload raising the limit replaces the listener's server.
	if err := rt.Reload(mustParse(t, strings.Replace(y, "max_recv_msg_size: 65536", "max_recv_msg_size: 131072", 1))); err != nil {
		t.Fatal(err)
	}
	cc2 := testkit.Client(t, rt.Addr("grpc-in").String()) // address :0 → a new port
	testkit.Succeeds(t, ctx, 20*time.Millisecond, func() error { return cc2.Invoke(ctx, "/legacy.Legacy/Echo", big, &out) }, "after raising the listener limit")
	if len(out) != len(big) {
		t.Fatalf("after raising the listener limit: %d bytes back, want %d", len(out), len(big))
	}
}

// TestUpstreamMaxRecvMsgSize: a gRPC upstream's reply over
// upstreams[].max_recv_msg_size fails the MGP request with result 6.
func TestUpstreamMaxRecvMsgSize(t *testing.T) {
	grpcIn := testkit.FreeAddr(t)
	y := strings.Replace(doubleBridgeConfig(grpcIn, legacyServer(t), ""), "{name: self, protocol: grpc,", "{name: self, protocol: grpc, max_recv_msg_size: 4096,", 1)
	rt := startReady(t, mustParse(t, y))
	cl := dial(t, rt, "mgp-in", 1)
	warmUp(t, cl)
	if r, err := call(cl, 1, strings.Repeat("s", 4000)); err != nil || r.Result != 0 {
		t.Fatalf("under the limit: %v %+v", err, r)
	}
	r, err := call(cl, 1, strings.Repeat("b", 5000))
	if err != nil || r.Result != codec.ResultOverloaded {
		t.Fatalf("reply over the upstream limit: %v %+v", err, r)
	}
	// A reload raising the limit rebuilds the pool.
	if err := rt.Reload(mustParse(t, strings.Replace(y, "max_recv_msg_size: 4096", "max_recv_msg_size: 8192", 1))); err != nil {
		t.Fatal(err)
	}
	if r, err := call(cl, 1, strings.Repeat("b", 5000)); err != nil || r.Result != 0 {
		t.Fatalf("after raising the limit: %v %+v", err, r)
	}
}

// TestGRPCListenerStreamWorkers checks that a grpc listener serves calls on
// grpc-go's stream workers: 200 sequential calls gRPC → private (the
// reference legacy server answers inline, the gRPC client starts no
// goroutine per unary call). A call without a deadline also starts the
// listener's first-message receive helper (limits.recv_timeout, package
// outbound): one goroutine per call; a call whose deadline is shorter than
// recv_timeout does not. Before: one goroutine per call for the handler
// and one for the helper (400 in all, either way).
func TestGRPCListenerStreamWorkers(t *testing.T) {
	rt := start(t, mustParse(t, grpcConfig(legacyServer(t), backend(t, "A"))))
	cc := testkit.Client(t, rt.Addr("grpc-in").String())
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		streamWorkers(t, cc, ctx, 0)
	})
	t.Run("no_deadline", func(t *testing.T) {
		streamWorkers(t, cc, context.Background(), 1)
	})
}

// streamWorkers makes 200 sequential calls and fails when more than
// perCall goroutines per call (+10 %) were started.
func streamWorkers(t *testing.T, cc *grpc.ClientConn, ctx context.Context, perCall int) {
	call := func() {
		var out []byte
		if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte("x"), &out); err != nil || string(out) != "x" {
			t.Fatalf("echo: %q %v", out, err)
		}
	}
	for i := 0; i < 20; i++ { // connections and workers up
		call()
	}
	const n = 200
	before := testkit.GoroutinesCreated()
	for i := 0; i < n; i++ {
		call()
	}
	if created, limit := testkit.GoroutinesCreated()-before, uint64(perCall*n+n/10); created > limit {
		t.Fatalf("%d goroutines started for %d sequential calls; want at most %d (handlers on stream workers)", created, n, limit)
	}
}

// TestInteropCustomMetadataDoubleBridge: grpc-go's interop custom_metadata
// case (unary part: an ASCII header echoed as a response header, a binary
// one echoed as a trailer) passes through gRPC → MGP → gRPC, with the two
// keys mapped to application extensions by listeners[].metadata.
func TestInteropCustomMetadataDoubleBridge(t *testing.T) {
	is := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(is, interop.NewTestServer())
	interopAddr := testkit.Serve(t, is, nil)

	mgpIn := testkit.FreeAddr(t)
	const pairs = `[{ext: 0x8001, key: x-grpc-test-echo-initial}, {ext: 0x8002, key: x-grpc-test-echo-trailing-bin, trailer: true}]`
	cfg := mustParse(t, fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s, drain_timeout: 2s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    metadata: %s
    routes: [{method: /grpc.testing.TestService/UnaryCall, cmd: 10, upstream: self}]
  - name: mgp-in
    kind: private
    address: %s
    metadata: %s
    routes: [{cmd: 10, method: /grpc.testing.TestService/UnaryCall, upstream: interop}]
upstreams:
  - {name: self, protocol: private, endpoints: [%q]}
  - {name: interop, protocol: grpc, endpoints: [%q]}
`, pairs, mgpIn, pairs, mgpIn, interopAddr))
	rt := startWith(t, cfg, Options{DrainQuiet: 100 * time.Millisecond, WarmUp: -1})

	cc := testkit.Dial(t, rt.Addr("grpc-in").String())
	tc := testgrpc.NewTestServiceClient(cc)
	ctx := testkit.Context(t, 10*time.Second)
	md := metadata.Pairs("x-grpc-test-echo-initial", "test_initial_metadata_value",
		"x-grpc-test-echo-trailing-bin", string([]byte{0xab, 0xab, 0xab}))
	req := &testpb.SimpleRequest{ResponseType: testpb.PayloadType_COMPRESSABLE, ResponseSize: 1,
		Payload: &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: []byte{0}}}
	var header, trailer metadata.MD
	var reply *testpb.SimpleResponse
	// The private pool to mgp-in connects once the listener is up.
	testkit.Succeeds(t, ctx, 20*time.Millisecond, func() (err error) {
		header, trailer = nil, nil
		reply, err = tc.UnaryCall(metadata.NewOutgoingContext(ctx, md), req, grpc.Header(&header), grpc.Trailer(&trailer))
		return err
	}, "UnaryCall")
	if p := reply.GetPayload(); p.GetType() != testpb.PayloadType_COMPRESSABLE || len(p.GetBody()) != 1 {
		t.Fatalf("reply %v", reply)
	}
	if v := header["x-grpc-test-echo-initial"]; len(v) != 1 || v[0] != "test_initial_metadata_value" {
		t.Errorf("header x-grpc-test-echo-initial = %q (header %v)", v, header)
	}
	if v := trailer["x-grpc-test-echo-trailing-bin"]; len(v) != 1 || v[0] != "\xab\xab\xab" {
		t.Errorf("trailer x-grpc-test-echo-trailing-bin = %q (trailer %v)", v, trailer)
	}
	for k := range header {
		if len(k) > 10 && k[:10] == "x-mgp-ext-" {
			t.Errorf("mapped extension also sent as %s", k)
		}
	}
}
