package config

import (
	"testing"
)

// TestListenerGRPCTransport: listeners[].grpc_transport accepts direct
// (the default: empty) and grpc-go, also with a streaming route, the push
// API and reflection (delegated to grpc-go's server); anything else and
// direct on a private listener are rejected naming the field (rows of
// TestErrorsNameTheField).
func TestListenerGRPCTransport(t *testing.T) {
	const grpcL = "address: 127.0.0.1:7001"
	cfg := mustParse(t, good, "")
	if !cfg.Listeners[1].DirectServer() {
		t.Fatal("an empty grpc_transport is not the default direct transport")
	}
	if cfg.Listeners[0].DirectServer() {
		t.Fatal("a private listener on the direct gRPC transport")
	}
	for _, v := range []string{"grpc-go", "direct"} {
		if got := mustParse(t, edit(t, good, grpcL, grpcL+"\n    grpc_transport: "+v), "").Listeners[1].DirectServer(); got != (v == "direct") {
			t.Fatalf("%s: DirectServer %v", v, got)
		}
	}
	direct := edit(t, good, grpcL, grpcL+"\n    grpc_transport: direct")
	for name, c := range map[string]struct{ from, to string }{
		"stream":     {"cmd: 1, upstream: p}", "cmd: 1, upstream: p, stream: server}"},
		"push api":   {grpcL, grpcL + "\n    push: {api: true}"},
		"reflection": {grpcL, grpcL + "\n    reflection: {descriptor_sets: [x.protoset]}"},
	} {
		if _, err := Parse([]byte(edit(t, direct, c.from, c.to)), ""); err != nil {
			t.Errorf("direct with %s: %v", name, err)
		}
	}
}
