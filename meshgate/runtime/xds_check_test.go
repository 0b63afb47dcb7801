package runtime

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
)

// TestCheckXDSFilesNamed: Check (what `meshgate validate` prints) loads
// every file the control plane needs, as the running control plane will,
// and names the field of each problem: the control plane's own xds.tls
// (before, only Listen found it), a cluster's missing CA, and a listener
// certificate with another certificate's key (before, validate said OK
// and the push failed at run time).
func TestCheckXDSFilesNamed(t *testing.T) {
	dir := t.TempDir()
	_, f, err := testpki.WriteSet(dir, "xds", "cloud", "other")
	if err != nil {
		t.Fatal(err)
	}
	y := func(xdsKey, clusterCA, listenerKey string) string {
		return fmt.Sprintf(`
listeners: []
upstreams: []
xds:
  address: 127.0.0.1:18000
  tls: {cert_file: %q, key_file: %q, ca_file: %q}
  envoy:
  - node: cloud
    listeners:
    - {name: l, address: 127.0.0.1:10100, protocol: private, route_to: {cluster: c}, tls: {cert_file: %q, key_file: %q}}
    clusters:
    - {name: c, protocol: private, endpoints: [127.0.0.1:10200], tls: {ca_file: %q}}
`, f["xds"].CertFile, xdsKey, f["xds"].CAFile, f["cloud"].CertFile, listenerKey, clusterCA)
	}
	good, err := config.Parse([]byte(y(f["xds"].KeyFile, f["cloud"].CAFile, f["cloud"].KeyFile)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	bad, err := config.Parse([]byte(y(dir+"/missing-key.pem", dir+"/missing-ca.pem", f["other"].KeyFile)), dir)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(bad)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	for _, field := range []string{"xds.tls: cert_file/key_file:", "xds.envoy[0].clusters[0].tls: ca_file:", "xds.envoy[0].listeners[0].tls: cert_file/key_file:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("no %q in %v", field, err)
		}
	}
}
