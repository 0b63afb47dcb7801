package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/envoyproc"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/xds"
	"github.com/meshgate/meshgate/xds/model"
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
	xdsAddr := harness.FreeAddr(t)
	pki := newXDSPKI(t, dir, nil)
	edgeTLS := pki.client(t, "edge")
	proxylessTLS := pki.client(t, "cmd-client") // DNS SAN cmd-client: the default identity of node cmd-client
	// Stand-in for MeshGate's grpc listener: `meshgate xds` runs no data
	// path, so the demo gRPC service listens where grpc_in would.
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := demo.NewServer()
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	cfg := fmt.Sprintf(`
listeners:
- {name: grpc_in, kind: grpc, address: %q, routes: [{method: "/legacy.Legacy/*", cmd: 1, upstream: legacy}]}
upstreams:
- {name: legacy, protocol: private, endpoints: ["127.0.0.1:1"]}
xds:
  address: %s
  %s
  envoy:
  - node: edge
    xds_tls: %s
    listeners:
    - {name: in, address: 127.0.0.1:%d, protocol: grpc, route_to: {meshgate_listener: grpc_in}}
  proxyless_nodes: [{node: cmd-client}]
  grpc_clients:
  - {name: legacy-bridge, route_to: {meshgate_listener: grpc_in}}
`, gl.Addr().String(), xdsAddr, pki.serverYAML(), clientYAML(edgeTLS), harness.FreePort(t))
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
	harness.WaitTCP(t, 20*time.Second, xdsAddr)
	gb, err := xds.GRPCBootstrap(xdsAddr, "cmd-client", &model.ClientTLS{CertFile: proxylessTLS.CertFile, KeyFile: proxylessTLS.KeyFile, CAFile: proxylessTLS.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(gb)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///legacy-bridge", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{}), grpc.WaitForReady(true)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []byte
	if err := cc.Invoke(ctx, "/demo.Echo/Echo", []byte("via meshgate xds"), &out); err != nil || string(out) != "via meshgate xds" {
		t.Fatalf("call through xds:///legacy-bridge served by `meshgate xds`: %q %v", out, err)
	}
	if !strings.Contains(p.Output(), "xds listening on") {
		t.Fatalf("meshgate xds output:\n%s", p.Output())
	}
	p.Stop()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("meshgate xds did not exit on SIGTERM")
	}
}
