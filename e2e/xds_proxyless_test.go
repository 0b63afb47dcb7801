package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpcxds "google.golang.org/grpc/xds" // registers the xds resolver and balancers (client side only)

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/runtime"
	"github.com/meshgate/meshgate/xds"
)

// TestXDSProxyless: a grpc-go client with an xDS bootstrap pointing at
// MeshGate's control plane (mutual TLS, SPIFFE identity) resolves xds:///legacy-bridge to MeshGate's grpc
// listener and completes calls through MeshGate to a legacy MGP server;
// moving the target to another MeshGate listener (a config reload of the
// runtime, which pushes a new snapshot) is followed by the client.
func TestXDSProxyless(t *testing.T) {
	legacyA, legacyB := legacy.NewServer(legacy.ServerOptions{}), legacy.NewServer(legacy.ServerOptions{})
	for _, s := range []*legacy.Server{legacyA, legacyB} {
		if err := s.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	// The xDS resources name the listeners by address: concrete ports.
	inA, inB := harness.FreeAddr(t), harness.FreeAddr(t)
	// ADS over mutual TLS: the client's certificate (SPIFFE URI SAN) is
	// the identity allowed to claim node proxyless-client-1.
	pki := newXDSPKI(t, t.TempDir(), nil)
	clientTLS := pki.client(t, "proxyless-client", "spiffe://meshgate.e2e/ns/legacy/sa/proxyless-client-1")
	cfgFor := func(target string) *config.Config {
		y := fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
- {name: grpc_a, kind: grpc, address: %q, routes: [{method: "/legacy.Legacy/*", cmd: 1, upstream: legacy_a}]}
- {name: grpc_b, kind: grpc, address: %q, routes: [{method: "/legacy.Legacy/*", cmd: 1, upstream: legacy_b}]}
upstreams:
- {name: legacy_a, protocol: private, endpoints: [%q]}
- {name: legacy_b, protocol: private, endpoints: [%q]}
xds:
  address: 127.0.0.1:0
  %s
  proxyless_nodes:
  - {node: proxyless-client-1, identities: ["spiffe://meshgate.e2e/ns/legacy/sa/proxyless-client-1"]}
  grpc_clients:
  - name: legacy-bridge
    route_to: {meshgate_listener: %s}
`, inA, inB, legacyA.Addr().String(), legacyB.Addr().String(), pki.serverYAML(), target)
		cfg, err := config.Parse([]byte(y), "")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := cfgFor("grpc_a")
	rt, err := runtime.New(cfg, runtime.Options{NoAdmin: true, Logger: newSlog(t, "meshgate")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	// The runtime runs the control plane of the config's xds section.
	xs := rt.XDS()
	if xs == nil {
		t.Fatal("runtime did not start the xds control plane")
	}
	boot, err := xds.GRPCBootstrap(xs.Addr().String(), "proxyless-client-1", clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	cc := harness.DialGRPC(t, "xds:///legacy-bridge", grpc.WithResolvers(rb), harness.RawCodec(), grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
	call := func(body string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return grpcCall(ctx, cc, "/legacy.Legacy/Echo", body, body)
	}
	if err := call("hello via xds"); err != nil {
		t.Fatalf("xds:///legacy-bridge: %v", err)
	}
	for i := 0; i < 20; i++ {
		if err := call(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := legacyA.Stats().Requests; n < 21 {
		t.Fatalf("legacy A served %d requests, want ≥ 21", n)
	}
	// Move the target: the client follows the new endpoint (EDS update).
	if err := rt.Reload(cfgFor("grpc_b")); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 15*time.Second, "client follows the moved endpoint", func() error {
		before := legacyB.Stats().Requests
		if err := call("moved"); err != nil {
			return err
		}
		if legacyB.Stats().Requests == before {
			return fmt.Errorf("still served by A")
		}
		return nil
	})
	if rt.XDS() != xs {
		t.Fatal("the reload restarted the control plane (its address is unchanged)")
	}
	if err := xs.NackCheck(); err != nil {
		t.Fatal(err)
	}
}
