package config

import (
	"errors"
	"strings"
	"testing"
)

// TestListenerGRPCTransport: listeners[].grpc_transport accepts direct
// (the default: empty) and grpc-go, also with a streaming route, the push API and
// reflection (delegated to grpc-go's server); anything else and direct on
// a private listener are rejected naming the field.
func TestListenerGRPCTransport(t *testing.T) {
	const grpcL = "address: 127.0.0.1:7001"
	cfg, err := Parse([]byte(good), "")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Listeners[1].DirectServer() {
		t.Fatal("an empty grpc_transport is not the default direct transport")
	}
	if cfg.Listeners[0].DirectServer() {
		t.Fatal("a private listener on the direct gRPC transport")
	}
	for _, v := range []string{"grpc-go", "direct"} {
		c, err := Parse([]byte(strings.Replace(good, grpcL, grpcL+"\n    grpc_transport: "+v, 1)), "")
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got := c.Listeners[1].DirectServer(); got != (v == "direct") {
			t.Fatalf("%s: DirectServer %v", v, got)
		}
	}
	direct := strings.Replace(good, grpcL, grpcL+"\n    grpc_transport: direct", 1)
	for name, c := range map[string]struct{ from, to string }{
		"stream":     {"cmd: 1, upstream: p}", "cmd: 1, upstream: p, stream: server}"},
		"push api":   {grpcL, grpcL + "\n    push: {api: true}"},
		"reflection": {grpcL, grpcL + "\n    reflection: {descriptor_sets: [x.protoset]}"},
	} {
		if _, err := Parse([]byte(strings.Replace(direct, c.from, c.to, 1)), ""); err != nil {
			t.Errorf("direct with %s: %v", name, err)
		}
	}
	for name, c := range map[string]struct {
		base, from, to, field string
	}{
		"unknown": {good, grpcL, grpcL + "\n    grpc_transport: h2", `listeners[1].grpc_transport: must be "grpc-go" or "direct", got "h2"`},
		"private": {good, "address: 127.0.0.1:7000", "address: 127.0.0.1:7000\n    grpc_transport: direct", `listeners[0].grpc_transport: "direct" is for grpc listeners only`},
	} {
		_, err := Parse([]byte(strings.Replace(c.base, c.from, c.to, 1)), "")
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v, want %q", name, err, c.field)
		}
	}
}
