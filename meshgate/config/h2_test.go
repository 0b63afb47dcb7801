package config

import (
	"testing"
)

// TestGRPCTransport: upstreams[].grpc_transport accepts grpc-go and
// direct (the default of a grpc upstream with static endpoints; an
// xds:/// target and a private upstream never use it); anything else,
// direct on a private upstream and direct with an xds:/// target are
// rejected naming the field (rows of TestErrorsNameTheField).
func TestGRPCTransport(t *testing.T) {
	const ep = "endpoints: [127.0.0.1:9000]"
	cfg := mustParse(t, good, "")
	if !cfg.Upstreams[0].DirectTransport() {
		t.Fatal("a grpc upstream with static endpoints does not default to direct")
	}
	if cfg.Upstreams[1].DirectTransport() {
		t.Fatal("a private upstream uses the direct gRPC transport")
	}
	if mustParse(t, edit(t, good, ep, `endpoints: ["xds:///svc"]`), "").Upstreams[0].DirectTransport() {
		t.Fatal("an xds:/// upstream defaults to direct")
	}
	for _, v := range []string{"grpc-go", "direct"} {
		if got := mustParse(t, edit(t, good, ep, ep+", grpc_transport: "+v), "").Upstreams[0].DirectTransport(); got != (v == "direct") {
			t.Fatalf("%s: DirectTransport %v", v, got)
		}
	}
}
