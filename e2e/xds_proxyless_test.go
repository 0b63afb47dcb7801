package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpcxds "google.golang.org/grpc/xds" // registers the xds resolver and balancers (client side only)

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/envoyproc"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/runtime"
	"github.com/meshgate/meshgate/xds"
	"github.com/meshgate/meshgate/xds/model"
)

// proxylessClient is a grpc-go client of target whose xDS bootstrap points
// at the control plane on xdsAddr as node, presenting clientTLS.
func proxylessClient(t *testing.T, xdsAddr, node string, clientTLS testpki.TLSFiles, target string) *grpc.ClientConn {
	t.Helper()
	boot, err := xds.GRPCBootstrap(xdsAddr, node, &model.ClientTLS{CertFile: clientTLS.CertFile, KeyFile: clientTLS.KeyFile, CAFile: clientTLS.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Client(t, target, grpc.WithResolvers(rb), grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
}

// TestXDSProxyless: a grpc-go client with an xDS bootstrap pointing at
// MeshGate's control plane (mutual TLS, SPIFFE identity) resolves xds:///legacy-bridge to MeshGate's grpc
// listener and completes calls through MeshGate to a legacy MGP server;
// moving the target to another MeshGate listener (a config reload of the
// runtime, which pushes a new snapshot) is followed by the client.
func TestXDSProxyless(t *testing.T) {
	legacyA, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	legacyB, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	// The xDS resources name the listeners by address: concrete ports.
	inA, inB := harness.FreeAddr(t), harness.FreeAddr(t)
	// ADS over mutual TLS: the client's certificate (SPIFFE URI SAN) is
	// the identity allowed to claim node proxyless-client-1.
	pki := xdstest.NewPKI(t, t.TempDir(), nil)
	clientTLS := pki.Client(t, "proxyless-client", "spiffe://meshgate.e2e/ns/legacy/sa/proxyless-client-1")
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
`, inA, inB, legacyA.Addr().String(), legacyB.Addr().String(), serverYAML(pki), target)
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
	cc := proxylessClient(t, xs.Addr().String(), "proxyless-client-1", clientTLS, "xds:///legacy-bridge")
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

// TestXDSCommands: `meshgate envoy-bootstrap -delta` output (with the
// mutual-TLS transport socket of the xds cluster) passes Envoy's own
// validation, and `meshgate xds -c FILE` alone serves the control plane
// over mutual TLS: a proxyless grpc-go client with "tls" channel
// credentials in its xDS bootstrap resolves its target through it and
// calls it.
func TestXDSCommands(t *testing.T) {
	envoy := envoyproc.Require(t)
	bin := harness.MeshgateBin(t)
	dir := t.TempDir()
	pki := xdstest.NewPKI(t, dir, nil)
	edgeTLS := pki.Client(t, "edge")
	proxylessTLS := pki.Client(t, "cmd-client") // DNS SAN cmd-client: the default identity of node cmd-client
	// Stand-in for MeshGate's grpc listener: `meshgate xds` runs no data
	// path, so the demo gRPC service listens where grpc_in would.
	gaddr := testkit.Demo(t)
	cfg := fmt.Sprintf(`
listeners:
- {name: grpc_in, kind: grpc, address: %q, routes: [{method: "/legacy.Legacy/*", cmd: 1, upstream: legacy}]}
upstreams:
- {name: legacy, protocol: private, endpoints: ["127.0.0.1:1"]}
xds:
  address: 127.0.0.1:0
  %s
  envoy:
  - node: edge
    xds_tls: %s
    listeners:
    - {name: in, address: 127.0.0.1:10000, protocol: grpc, route_to: {meshgate_listener: grpc_in}}
  proxyless_nodes: [{node: cmd-client}]
  grpc_clients:
  - {name: legacy-bridge, route_to: {meshgate_listener: grpc_in}}
`, gaddr, serverYAML(pki), edgeTLS.YAML()) // Envoy only validates the bootstrap: no port is bound
	cfgPath := harness.WriteFile(t, dir, "meshgate.yaml", []byte(cfg))

	boot := filepath.Join(dir, "bootstrap.yaml")
	if out, err := exec.Command(bin, "envoy-bootstrap", "-c", cfgPath, "-node", "edge", "-delta", "-o", boot).CombinedOutput(); err != nil {
		t.Fatalf("envoy-bootstrap: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(boot)
	if !strings.Contains(string(b), "DELTA_GRPC") || !strings.Contains(string(b), "envoy.transport_sockets.tls") || !strings.Contains(string(b), edgeTLS.CertFile) {
		t.Fatalf("not a delta bootstrap with the xds client certificate:\n%s", b)
	}
	if out, err := exec.Command(envoy, "--mode", "validate", "-c", boot, "--disable-hot-restart").CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("envoy --mode validate: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "envoy-bootstrap", "-c", cfgPath, "-node", "nope").CombinedOutput(); err == nil {
		t.Fatalf("unknown node accepted:\n%s", out)
	}

	p := harness.Start(t, "meshgate xds", bin, "xds", "-c", cfgPath)
	p.WaitOutput(t, 20*time.Second, "xds listening on ")
	xdsAddr := regexp.MustCompile(`xds listening on (\S+)`).FindStringSubmatch(p.Output())[1]
	cc := proxylessClient(t, xdsAddr, "cmd-client", proxylessTLS, "xds:///legacy-bridge")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []byte
	if err := cc.Invoke(ctx, "/demo.Echo/Echo", []byte("via meshgate xds"), &out); err != nil || string(out) != "via meshgate xds" {
		t.Fatalf("call through xds:///legacy-bridge served by `meshgate xds`: %q %v", out, err)
	}
	p.Stop()
}
