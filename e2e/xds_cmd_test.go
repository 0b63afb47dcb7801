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
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/envoyproc"
	"github.com/meshgate/meshgate/xds"
)

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
	pki := newXDSPKI(t, dir, nil)
	edgeTLS := pki.client(t, "edge")
	proxylessTLS := pki.client(t, "cmd-client") // DNS SAN cmd-client: the default identity of node cmd-client
	// Stand-in for MeshGate's grpc listener: `meshgate xds` runs no data
	// path, so the demo gRPC service listens where grpc_in would.
	gaddr := harness.DemoServer(t)
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
`, gaddr, pki.serverYAML(), clientYAML(edgeTLS)) // Envoy only validates the bootstrap: no port is bound
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
	gb, err := xds.GRPCBootstrap(xdsAddr, "cmd-client", proxylessTLS)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(gb)
	if err != nil {
		t.Fatal(err)
	}
	cc := harness.DialGRPC(t, "xds:///legacy-bridge", grpc.WithResolvers(rb), harness.RawCodec(), grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []byte
	if err := cc.Invoke(ctx, "/demo.Echo/Echo", []byte("via meshgate xds"), &out); err != nil || string(out) != "via meshgate xds" {
		t.Fatalf("call through xds:///legacy-bridge served by `meshgate xds`: %q %v", out, err)
	}
	p.Stop()
}
