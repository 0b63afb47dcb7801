package runtime

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/internal/testkit"
)

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
	rt, err := New(cfg, Options{DrainQuiet: 100 * time.Millisecond, WarmUp: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)

	cc, err := grpc.NewClient(rt.Addr("grpc-in").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md := metadata.Pairs("x-grpc-test-echo-initial", "test_initial_metadata_value",
		"x-grpc-test-echo-trailing-bin", string([]byte{0xab, 0xab, 0xab}))
	req := &testpb.SimpleRequest{ResponseType: testpb.PayloadType_COMPRESSABLE, ResponseSize: 1,
		Payload: &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: []byte{0}}}
	var header, trailer metadata.MD
	var reply *testpb.SimpleResponse
	for {
		// The private pool to mgp-in connects once the listener is up.
		header, trailer = nil, nil
		reply, err = tc.UnaryCall(metadata.NewOutgoingContext(ctx, md), req, grpc.Header(&header), grpc.Trailer(&trailer))
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
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
