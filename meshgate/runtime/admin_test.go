package runtime

import (
	"strings"
	"testing"
)

// TestAdminPprofAndHealthAddress: admin.pprof turns pprof on (admin
// listener only); admin.health_address serves /healthz, /readyz and
// /metrics and nothing else.
func TestAdminPprofAndHealthAddress(t *testing.T) {
	ep := backend(t, "A")
	y := strings.Replace(yamlConfig(ep, ""), `admin: {address: "127.0.0.1:0"}`,
		`admin: {address: "127.0.0.1:0", health_address: "127.0.0.1:0", pprof: true}`, 1)
	rt := start(t, mustParse(t, y))
	admin := "http://" + rt.AdminAddr().String()
	if rt.Admin().HealthAddr() == nil {
		t.Fatal("health listener not started")
	}
	health := "http://" + rt.Admin().HealthAddr().String()
	if code, _ := get(t, admin+"/debug/pprof/cmdline"); code != 200 {
		t.Fatalf("admin pprof %d with admin.pprof: true", code)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := get(t, health+p); code != 200 {
			t.Errorf("health %s: %d", p, code)
		}
	}
	if _, body := get(t, health+"/metrics"); !strings.Contains(body, "meshgate_") {
		t.Errorf("health /metrics lacks meshgate metrics")
	}
	for _, p := range []string{"/config", "/debug/pprof/", "/debug/pprof/cmdline", "/"} {
		if code, _ := get(t, health+p); code != 404 {
			t.Errorf("health %s: %d, want 404", p, code)
		}
	}
}
