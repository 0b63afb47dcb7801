package docker

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds"
)

// TestComposeBootstrapsMatchConfig: the committed Envoy bootstraps are
// exactly what `meshgate envoy-bootstrap` renders from bridge-meshgate.yaml
// (so they carry the mutual-TLS transport socket of the xds cluster), and
// nothing in the bridge listens for admin on a wildcard address.
func TestComposeBootstrapsMatchConfig(t *testing.T) {
	cfg, err := config.Load(filepath.Join("compose", "bridge-meshgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.XDS.TLS == nil {
		t.Fatal("bridge-meshgate.yaml: xds.tls missing")
	}
	if !strings.HasPrefix(cfg.Admin.Address, "127.0.0.1:") {
		t.Errorf("admin.address %q: keep admin on loopback", cfg.Admin.Address)
	}
	m, err := cfg.XDSModel()
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"idc", "cloud"} {
		want, err := xds.Bootstrap(m, node, xds.BootstrapOptions{XDSAddress: "172.28.0.10:18000"})
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join("compose", "envoy-"+node+".yaml")
		got := readFile(t, f)
		if string(got) != string(want) {
			t.Errorf("%s is stale; regenerate: meshgate envoy-bootstrap -c bridge-meshgate.yaml -node %s -xds-address 172.28.0.10:18000 -o envoy-%s.yaml", f, node, node)
		}
		if !strings.Contains(string(got), "envoy.transport_sockets.tls") || strings.Contains(string(got), "0.0.0.0") {
			t.Errorf("%s: xds cluster without TLS or admin on a wildcard address", f)
		}
	}
}
