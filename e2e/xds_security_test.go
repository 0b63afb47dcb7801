package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/xdstest"
)

// TestXDSSecurityBinary runs the real `meshgate run` with an mTLS control
// plane on 127.0.0.1 and plays hostile ADS clients against it: without a
// client certificate (or in plaintext) the handshake fails; with idc's
// certificate claiming cloud — whose SDS secrets carry cloud's private
// key — or an undeclared node id, the stream is closed with
// PermissionDenied over state-of-the-world and delta, and every refusal
// is counted in meshgate_xds_refused_total. idc claiming idc gets its own
// secrets. `meshgate validate` refuses plaintext ADS on a non-loopback
// address, naming the field.
func TestXDSSecurityBinary(t *testing.T) {
	dir := t.TempDir()
	pki := xdstest.NewPKI(t, dir, nil)
	idc := pki.Client(t, "idc")     // DNS SAN idc: node idc's default identity
	cloud := pki.Client(t, "cloud") // used only as SDS material of node cloud
	cfg := fmt.Sprintf(`
listeners: []
upstreams: []
xds:
  address: 127.0.0.1:0
  %s
  envoy:
  - node: idc
    listeners:
    - {name: in, address: 127.0.0.1:10000, protocol: private, route_to: {cluster: up}}
    clusters:
    - {name: up, protocol: private, endpoints: [127.0.0.1:10100], tls: %s}
  - node: cloud
    listeners:
    - {name: in, address: 127.0.0.1:10100, protocol: private, tls: %s, route_to: {cluster: up}}
    clusters:
    - {name: up, protocol: private, endpoints: [127.0.0.1:7200]}
`, serverYAML(pki), idc.YAML(), cloud.YAML())
	mg := harness.StartMeshgate(t, cfg, harness.InDir(dir), harness.WaitReady(20*time.Second))
	dial := func(c credentials.TransportCredentials) discovery.AggregatedDiscoveryServiceClient {
		return xdstest.ADS(t, mg.XDS(), c)
	}
	ctx := testkit.Context(t, 20*time.Second)

	// 1. No client certificate, or no TLS at all: nothing.
	for name, c := range map[string]credentials.TransportCredentials{
		"tls without client certificate": pki.Creds(t, ""),
		"plaintext":                      insecure.NewCredentials(),
	} {
		if r, err := xdstest.FirstSecrets(ctx, dial(c), "idc"); status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: got %v / %v, want Unavailable (handshake refused)", name, r, err)
		}
	}

	// 2. A valid certificate claiming someone else's node id, or a node
	// nobody declared: PermissionDenied, over SotW and delta.
	asIDC := dial(pki.Creds(t, "idc"))
	for _, node := range []string{"cloud", "stranger"} {
		if r, err := xdstest.FirstSecrets(ctx, asIDC, node); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("idc certificate claiming %s (sotw): got %v / %v, want PermissionDenied", node, r, err)
		}
		if r, err := xdstest.FirstDeltaSecrets(ctx, asIDC, node); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("idc certificate claiming %s (delta): got %v / %v, want PermissionDenied", node, r, err)
		}
	}

	// 3. The rightful node gets its own secrets.
	r, err := xdstest.FirstSecrets(ctx, asIDC, "idc")
	if err != nil || len(r.GetResources()) == 0 {
		t.Fatalf("idc as idc: %v / %v", r, err)
	}
	d, err := xdstest.FirstDeltaSecrets(ctx, asIDC, "idc")
	if err != nil || len(d.GetResources()) == 0 {
		t.Fatalf("idc as idc (delta): %v / %v", d, err)
	}

	// 4. Every refusal was counted.
	metrics, err := mg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for reason, min := range map[string]float64{"handshake": 2, "identity_mismatch": 2, "unknown_node": 2} {
		if n := harness.MetricSum(metrics, "meshgate_xds_refused_total", harness.Labels{"reason": reason}); n < min {
			t.Errorf("meshgate_xds_refused_total{reason=%q} = %v, want >= %v", reason, n, min)
		}
	}

	// 5. validate refuses plaintext ADS off loopback, naming the field.
	for field, x := range map[string]string{
		"xds.tls":     "xds:\n  address: 0.0.0.0:18000\n",
		"xds.address": "xds:\n  address: 0.0.0.0:18000\n  insecure: true\n",
	} {
		p := harness.WriteFile(t, dir, "bad.yaml", []byte("listeners: []\nupstreams: []\n"+x))
		out, err := exec.Command(harness.MeshgateBin(t), "validate", "-c", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), field+":") {
			t.Errorf("validate %q: err %v, output %s; want it to name %s", x, err, out, field)
		}
	}
}
