package config

import (
	"errors"
	"strings"
	"testing"
)

// TestGRPCTransport: upstreams[].grpc_transport accepts grpc-go and
// direct (the default of a grpc upstream with static endpoints; an
// xds:/// target and a private upstream never use it); anything else,
// direct on a private upstream and direct with an xds:/// target are
// rejected naming the field.
func TestGRPCTransport(t *testing.T) {
	cfg, err := Parse([]byte(good), "")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Upstreams[0].DirectTransport() {
		t.Fatal("a grpc upstream with static endpoints does not default to direct")
	}
	if cfg.Upstreams[1].DirectTransport() {
		t.Fatal("a private upstream uses the direct gRPC transport")
	}
	xds, err := Parse([]byte(strings.Replace(good, "endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///svc"]`, 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if xds.Upstreams[0].DirectTransport() {
		t.Fatal("an xds:/// upstream defaults to direct")
	}
	for _, v := range []string{"grpc-go", "direct"} {
		c, err := Parse([]byte(strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000], grpc_transport: "+v, 1)), "")
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got := c.Upstreams[0].DirectTransport(); got != (v == "direct") {
			t.Fatalf("%s: DirectTransport %v", v, got)
		}
	}
	for name, c := range map[string]struct{ from, to, field string }{
		"unknown": {"endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000], grpc_transport: h2", `upstreams[0].grpc_transport: must be "grpc-go" or "direct", got "h2"`},
		"private": {"endpoints: [127.0.0.1:8000]", "endpoints: [127.0.0.1:8000], grpc_transport: direct", `upstreams[1].grpc_transport: "direct" is for grpc upstreams only`},
		"xds":     {"endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///svc"], grpc_transport: direct`, `upstreams[0].grpc_transport: "direct" needs static endpoints`},
	} {
		_, err := Parse([]byte(strings.Replace(good, c.from, c.to, 1)), "")
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v, want %q", name, err, c.field)
		}
	}
}
