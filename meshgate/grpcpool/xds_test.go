package grpcpool

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds"
)

// TestXDSUpstream: an upstream whose endpoint is xds:///NAME is resolved by an xDS control
// plane (here MeshGate's own, serving NAME to proxyless clients) rather than as host:port.
func TestXDSUpstream(t *testing.T) {
	addr := backend(t, "via-xds")
	cfg, err := config.Parse(fmt.Appendf(nil, `
listeners:
- {name: g, kind: grpc, address: 127.0.0.1:0, routes: [{method: /legacy.L/*, cmd: 1, upstream: p}]}
upstreams:
- {name: p, protocol: private, endpoints: [127.0.0.1:1]}
xds:
  address: 127.0.0.1:0
  insecure: true
  proxyless_nodes: [{node: meshgate-pool-test}]
  grpc_clients:
  - {name: who.test, endpoints: [%q]}
`, addr), "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := cfg.XDSModel()
	if err != nil {
		t.Fatal(err)
	}
	srv := xds.NewServer(xds.Options{})
	if err := srv.Update(m); err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	boot, err := xds.GRPCBootstrap(ln.String(), "meshgate-pool-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(config.Upstream{Name: "u", Protocol: config.ProtoGRPC, Endpoints: []string{"xds:///who.test"}, Connections: 1},
		Options{DialOptions: []grpc.DialOption{grpc.WithResolvers(rb)}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := who(t, p, 7); got != "via-xds" {
		t.Fatalf("reply %q", got)
	}
}
