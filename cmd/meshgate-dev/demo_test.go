package main

import (
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/runtime"
)

// TestDemoConfig: the embedded demo config validates (as `meshgate
// validate` would) and names the peers and listeners the demo needs, on the
// documented fixed loopback ports.
func TestDemoConfig(t *testing.T) {
	cfg, err := config.Parse(demoConfig, ".")
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.Check(cfg); err != nil {
		t.Fatal(err)
	}
	d, err := demoAddrsOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := demoAddrs{legacy: "127.0.0.1:7100", grpc: "127.0.0.1:7101", mgpIn: "127.0.0.1:7000", grpcIn: "127.0.0.1:7001", admin: "127.0.0.1:9901"}
	if d != want {
		t.Fatalf("demo addresses %+v, want %+v", d, want)
	}
	cfg.Upstreams = cfg.Upstreams[:0]
	if _, err := demoAddrsOf(cfg); err == nil {
		t.Fatal("a config without the legacy upstream was accepted")
	}
}
