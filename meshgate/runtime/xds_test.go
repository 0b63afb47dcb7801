package runtime

import (
	"fmt"
	"testing"
)

// TestXDSWiring: an xds section starts the control plane with the runtime,
// every reload pushes a new snapshot version, readiness includes the xds
// check, and dropping the section stops it.
func TestXDSWiring(t *testing.T) {
	grpcEP := backend(t, "A")
	withXDS := func(ep string) string {
		return yamlConfig(grpcEP, "") + fmt.Sprintf(`
xds:
  address: 127.0.0.1:0
  insecure: true
  grpc_clients:
  - {name: svc, endpoints: [%q]}
`, ep)
	}
	rt := start(t, mustParse(t, withXDS("127.0.0.1:7001")))
	xs := rt.XDS()
	if xs == nil || xs.Addr() == nil {
		t.Fatal("control plane not started")
	}
	v1 := xs.Version()
	if err := rt.Admin().Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if err := rt.Reload(mustParse(t, withXDS("127.0.0.1:7002"))); err != nil {
		t.Fatal(err)
	}
	if v2 := rt.XDS().Version(); v2 == v1 || v2 == "" {
		t.Fatalf("reload did not push a new version: %q → %q", v1, v2)
	}
	if err := rt.Reload(mustParse(t, yamlConfig(grpcEP, ""))); err != nil {
		t.Fatal(err)
	}
	if rt.XDS() != nil {
		t.Fatal("control plane still running without an xds section")
	}
	if err := rt.Admin().Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
}
