package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/envoyproc"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestXDSSidecarBinary: the sidecar deployment with the real binaries.
// `meshgate run -c FILE` (config with an xds section on a unix socket)
// starts the control plane; Envoy runs on the bootstrap printed by
// `meshgate envoy-bootstrap`; its private listener carries the MGP
// proxy-wasm filter before tcp_proxy to MeshGate, its gRPC listener routes
// to MeshGate's grpc listener. Editing the config file pushes a snapshot;
// an edit Envoy NACKs turns /readyz to 503 and counts
// meshgate_xds_nacks_total; restoring the file makes MeshGate ready again.
func TestXDSSidecarBinary(t *testing.T) {
	envoyproc.Require(t)
	bin := harness.MeshgateBin(t)
	wasm := harness.WasmFilter(t)
	dir := t.TempDir()

	ls, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	dl := testkit.Demo(t)

	// Envoy's listeners come from xDS and the clusters it routes to name
	// MeshGate's listeners by address: both need concrete ports.
	scPriv, scGRPC := harness.FreePort(t), harness.FreePort(t)
	sock := filepath.Join(dir, "xds.sock")
	mgPriv, mgGRPC := harness.FreeAddr(t), harness.FreeAddr(t)
	cfgText := func(broken bool) string {
		extra := ""
		if broken {
			// Valid for MeshGate, rejected by Envoy (EDS needs an IP).
			extra = `
      routes: [{prefix: /broken.Svc/, route_to: {cluster: broken}}]
    clusters:
    - {name: broken, protocol: grpc, endpoints: ["broken.invalid:80"]}`
		}
		return fmt.Sprintf(`
defaults: {drain_timeout: 1s}
listeners:
- name: private_in
  kind: private
  address: %q
  routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]
- name: grpc_in
  kind: grpc
  address: %q
  routes: [{method: "/legacy.Legacy/*", cmd: 1, upstream: legacy}]
upstreams:
- {name: demo, protocol: grpc, endpoints: [%q]}
- {name: legacy, protocol: private, endpoints: [%q]}
xds:
  address: unix:%s
  envoy:
  - node: sidecar
    admin_address: 127.0.0.1:0
    listeners:
    - name: sc_private
      address: 127.0.0.1:%d
      protocol: private
      wasm: {file: %q, config: {deny_cmds: [9]}}
      route_to: {meshgate_listener: private_in}
    - name: sc_grpc
      address: 127.0.0.1:%d
      protocol: grpc
      route_to: {meshgate_listener: grpc_in}%s
`, mgPriv, mgGRPC, dl, ls.Addr().String(), sock, scPriv, wasm, scGRPC, extra)
	}
	good := cfgText(false)
	mg := harness.StartMeshgate(t, good, harness.InDir(dir), harness.WaitReady(20*time.Second))
	cfgPath, admin := mg.CfgPath, mg.Admin()
	// The plaintext unix socket is the only access control here: owner only.
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("xds socket %s: %v (err %v), want mode 0600", sock, st, err)
	}

	out, err := exec.Command(bin, "envoy-bootstrap", "-c", cfgPath, "-node", "sidecar").CombinedOutput()
	if err != nil {
		t.Fatalf("envoy-bootstrap: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "pipe:") || !strings.Contains(string(out), sock) {
		t.Fatalf("bootstrap does not reach the unix socket:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := envoyproc.StartT(t, ctx, envoyproc.Options{Bootstrap: out})

	// Private frames: client → Envoy (wasm filter, tcp_proxy) → MeshGate → demo gRPC.
	mc := dialMGPWhenReady(t, fmt.Sprintf("127.0.0.1:%d", scPriv), 1, "sidecar", "MGP call through the sidecar Envoy")
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	// The wasm filter refuses cmd 9 itself (result 4, forbidden).
	resp, err := mc.Call(cctx, 9, 1, []byte("x"), nil)
	if err != nil || resp.Result != 4 {
		t.Fatalf("cmd 9 through the wasm filter: resp %+v err %v", resp, err)
	}

	// gRPC: client → Envoy (HCM, HTTP/2) → MeshGate → legacy MGP server.
	cc := testkit.Client(t, fmt.Sprintf("127.0.0.1:%d", scGRPC))
	harness.Eventually(t, 10*time.Second, "gRPC call through the sidecar Envoy", func() error {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return grpcCall(c, cc, "/legacy.Legacy/Echo", "hi", "hi")
	})

	// An edit Envoy rejects: readiness reflects the NACK, Envoy keeps serving.
	mg.WriteConfig(cfgText(true))
	harness.Eventually(t, 20*time.Second, "/readyz reports the NACK", func() error {
		code, body, err := harness.HTTPGet("http://" + admin + "/readyz")
		if err != nil {
			return err
		}
		if code != 503 || !strings.Contains(body, "NACK") {
			return fmt.Errorf("readyz %d %q", code, strings.TrimSpace(body))
		}
		return nil
	})
	_, metrics, err := harness.HTTPGet("http://" + admin + "/metrics")
	// One per rejected version (a make-before-break update pushes up to three).
	if err != nil || !strings.Contains(metrics, `meshgate_xds_nacks_total{type_url="type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"} `) ||
		strings.Contains(metrics, `meshgate_xds_nacks_total{type_url="type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"} 0`) {
		t.Fatalf("metrics lack the NACK counter (err %v)", err)
	}
	if err := mgpCall(cctx, mc, "still-serving"); err != nil {
		t.Fatalf("after NACK: %v", err)
	}
	if err := grpcCall(cctx, cc, "/legacy.Legacy/Echo", "still", "still"); err != nil {
		t.Fatalf("after NACK: %v", err)
	}
	mg.WriteConfig(good)
	harness.WaitHTTP200(t, 20*time.Second, "http://"+admin+"/readyz")
	if err := dumpContains(env, `"envoy.filters.network.wasm"`, `deny_cmds`); err != nil {
		t.Fatal(err)
	}
}
