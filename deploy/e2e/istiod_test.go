package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/deploy/chart"
	"github.com/meshgate/meshgate/e2e/harness"
)

const (
	ns        = "game"
	clusterID = "Kubernetes"
	// istioVersion is what the proxies announce (node metadata ISTIO_VERSION).
	istioVersion = "1.31.0"
	echoHost     = "echo.game.svc.cluster.local"
	gatewayHost  = "mgp-gateway.idc.internal"
)

// need returns the path in env var name, failing under CI=true (a missing piece is a failure
// there) and skipping elsewhere.
func need(t *testing.T, name, what string) string {
	t.Helper()
	p := os.Getenv(name)
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not set: %s is required under CI (run `make istio-e2e`)", name, what)
		}
		t.Skipf("%s not set (%s); run `make istio-e2e`", name, what)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s=%s: %v", name, p, err)
	}
	return p
}

// world is everything the test writes into istiod's config directory.
type world struct {
	dir                     string
	wasm                    string
	gatewayPort, egressPort int // ServiceEntry port (= Envoy's egress listener) of the MGP gateway
	echoPort                int // ServiceEntry port of the gRPC service
}

// chartValues are the chart values the e2e deploys: the MGP gateway (MeshGate's private
// listener) and the gRPC service as ServiceEntry + WorkloadEntry, consistent hashing on
// x-mgp-uin for the gRPC service, the MGP filter on the egress port.
func (w *world) chartValues(gatewayAt int, echoAt []int, deny []uint32) map[string]any {
	var echoes []any
	for i, p := range echoAt {
		echoes = append(echoes, map[string]any{"name": fmt.Sprintf("echo-%d", i+1), "address": "127.0.0.1",
			"ports": map[string]any{"grpc": p}})
	}
	pluginConfig := map[string]any{}
	if len(deny) > 0 {
		cmds := []any{} // as YAML values would be
		for _, c := range deny {
			cmds = append(cmds, int(c))
		}
		pluginConfig["deny_cmds"] = cmds
	}
	return map[string]any{
		"mode":             "sidecar",
		"fullnameOverride": "meshgate",
		"istio": map[string]any{
			"inject": true,
			"wasmPlugin": map[string]any{
				"url":          "file://" + w.wasm,
				"mode":         "CLIENT",
				"ports":        []any{w.egressPort},
				"pluginConfig": pluginConfig,
			},
			"legacyBackends": []any{
				map[string]any{
					"name": "mgp-gateway", "host": gatewayHost, "location": "MESH_INTERNAL",
					"ports": []any{map[string]any{"number": w.egressPort, "name": "tcp-mgp", "protocol": "TCP"}},
					"workloads": []any{map[string]any{"name": "mgp-gateway-1", "address": "127.0.0.1",
						"ports": map[string]any{"tcp-mgp": gatewayAt}}},
				},
				map[string]any{
					"name": "echo", "host": echoHost, "location": "MESH_INTERNAL",
					"ports":     []any{map[string]any{"number": w.echoPort, "name": "grpc", "protocol": "GRPC"}},
					"workloads": echoes,
				},
			},
			"consistentHash": map[string]any{"hosts": []any{echoHost}},
		},
	}
}

// write renders the chart and writes its Istio objects into istiod's config directory, the
// WasmPlugin as the equivalent TrafficExtension (this istiod build translates WasmPlugin only
// with Kubernetes), plus the Sidecar of the legacy client's Envoy.
func (w *world) write(t *testing.T, gatewayAt int, echoAt []int, deny []uint32) {
	t.Helper()
	out, err := chart.Render("meshgate", ns, w.chartValues(gatewayAt, echoAt, deny))
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the whole set: a WorkloadEntry that is no longer rendered is removed.
	old, _ := filepath.Glob(filepath.Join(w.dir, "*.yaml"))
	files := map[string]string{}
	for f, m := range out {
		for i, doc := range chart.Split(m) {
			v, tm, err := chart.Decode(doc)
			if err != nil {
				t.Fatal(err)
			}
			r, ok := v.(*chart.IstioResource)
			if !ok {
				continue
			}
			name := fmt.Sprintf("%s-%d.yaml", strings.TrimSuffix(filepath.Base(f), ".yaml"), i)
			switch spec := r.Spec.(type) {
			case *extensionsv1alpha1.WasmPlugin:
				files["traffic-extension.yaml"] = trafficExtension(t, r.Meta.Name, spec)
			default:
				if tm.Kind == "PeerAuthentication" {
					// The legacy client's Envoy is a client here; no inbound side to protect.
					continue
				}
				files[name] = doc
			}
		}
	}
	files["sidecar.yaml"] = fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: legacy-client
  namespace: %s
spec:
  workloadSelector:
    labels: {app: legacy-client}
  egress:
    - port: {number: %d, protocol: TCP, name: tcp-mgp}
      bind: 127.0.0.1
      captureMode: NONE
      hosts: ["%s/%s"]
`, ns, w.egressPort, ns, gatewayHost)
	for _, f := range old {
		if _, ok := files[filepath.Base(f)]; !ok {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, doc := range files {
		// Write-then-rename: istiod's directory watcher never sees half a file.
		tmp := filepath.Join(w.dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(w.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// trafficExtension is the WasmPlugin's TrafficExtension equivalent: same selector, match,
// url and plugin config, type NETWORK.
func trafficExtension(t *testing.T, name string, wp *extensionsv1alpha1.WasmPlugin) string {
	t.Helper()
	te := &extensionsv1alpha1.TrafficExtension{
		Selector: wp.GetSelector(),
		FilterConfig: &extensionsv1alpha1.TrafficExtension_Wasm{Wasm: &extensionsv1alpha1.WasmConfig{
			Url:          wp.GetUrl(),
			PluginConfig: wp.GetPluginConfig(),
			FailStrategy: extensionsv1alpha1.FailStrategy(wp.GetFailStrategy()),
			Type:         wp.GetType(),
		}},
	}
	for _, m := range wp.GetMatch() {
		te.Match = append(te.Match, &extensionsv1alpha1.TrafficSelector{Mode: m.GetMode(), Ports: m.GetPorts()})
	}
	spec, err := protojson.Marshal(te)
	if err != nil {
		t.Fatal(err)
	}
	var specMap map[string]any
	if err := json.Unmarshal(spec, &specMap); err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(map[string]any{
		"apiVersion": "extensions.istio.io/v1alpha1", "kind": "TrafficExtension",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     specMap,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := chart.Decode(string(b)); err != nil {
		t.Fatalf("TrafficExtension does not decode: %v", err)
	}
	return string(b)
}

// TestIstiod: legacy MGP client → stock Envoy configured only by istiod from the chart's Istio
// resources (MGP wasm filter loaded) → meshgate binary → grpc-go service resolved by istiod
// through xds:///; resource changes (moved WorkloadEntries, a deny list) take effect live.
func TestIstiod(t *testing.T) {
	pilot := need(t, "PILOT_DISCOVERY_BIN", "istiod, built by deploy/istio/pilot-discovery.sh")
	envoyBin := need(t, "ENVOY_BIN", "Envoy 1.40")
	mgBin := need(t, "MESHGATE_BIN", "the meshgate binary")
	wasm := need(t, "MESHGATE_WASM", "bin/mgp_filter.wasm from `make wasm`")

	base := t.TempDir()
	w := &world{dir: filepath.Join(base, "istio-config"), wasm: wasm, egressPort: harness.FreePort(t), echoPort: harness.FreePort(t)}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	svcA, svcB := grpcService(t, "svc-a"), grpcService(t, "svc-b")
	portOf := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	mgA, mgB := harness.FreePort(t), harness.FreePort(t)
	w.write(t, mgA, []int{portOf(svcA)}, nil)

	// istiod: file config store, no Kubernetes, every address on loopback.
	xdsPort, httpPort := harness.FreePort(t), harness.FreePort(t)
	mesh := filepath.Join(base, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(fmt.Sprintf(`enableAutoMtls: false
trustDomain: cluster.local
defaultConfig:
  discoveryAddress: 127.0.0.1:%d
`, xdsPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Env for istiod (inherited by the children started below; none of them reads these).
	t.Setenv("POD_NAMESPACE", "istio-system")
	t.Setenv("POD_NAME", "istiod-e2e")
	t.Setenv("PILOT_ENABLE_METADATA_EXCHANGE", "false") // stock Envoy lacks Istio's own filters
	t.Setenv("PILOT_ENABLE_ALPN_FILTER", "false")
	t.Setenv("KUBECONFIG", "")
	start := time.Now()
	istiod := harness.Start(t, "istiod", pilot, "discovery",
		"--registries=", "--configDir="+w.dir, "--meshConfig="+mesh, "--clusterID="+clusterID,
		"--domain=cluster.local",
		fmt.Sprintf("--grpcAddr=127.0.0.1:%d", xdsPort),
		fmt.Sprintf("--httpAddr=127.0.0.1:%d", httpPort),
		fmt.Sprintf("--secureGRPCAddr=127.0.0.1:%d", harness.FreePort(t)),
		fmt.Sprintf("--httpsAddr=127.0.0.1:%d", harness.FreePort(t)),
		fmt.Sprintf("--monitoringAddr=127.0.0.1:%d", harness.FreePort(t)),
		"--ctrlz_address=127.0.0.1", fmt.Sprintf("--ctrlz_port=%d", harness.FreePort(t)))
	// istiod's /ready stays 503 without Kubernetes (sidecar injector, config validation);
	// discovery is up once its plaintext gRPC port accepts.
	harness.Eventually(t, 60*time.Second, "istiod xDS port", func() error {
		select {
		case <-istiod.Done():
			return fmt.Errorf("istiod exited")
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", xdsPort), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	t.Logf("istiod ready in %v", time.Since(start).Round(time.Millisecond))

	// MeshGate: listener A and B are the MGP gateway's two possible endpoints; the gRPC
	// upstream is xds:///, resolved by istiod (grpc-go xDS, proxyless node).
	boot := filepath.Join(base, "grpc-xds-bootstrap.json")
	writeJSON(t, boot, map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": fmt.Sprintf("127.0.0.1:%d", xdsPort), "channel_creds": []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": "sidecar~127.0.0.1~meshgate-0." + ns + "~" + ns + ".svc.cluster.local",
			"metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": ns, "CLUSTER_ID": clusterID,
				"ISTIO_VERSION": istioVersion, "LABELS": map[string]any{"app": "meshgate"}},
		},
		"server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
	})
	mgAdmin := harness.FreePort(t)
	mgCfg := filepath.Join(base, "meshgate.yaml")
	if err := os.WriteFile(mgCfg, []byte(fmt.Sprintf(`admin: {address: "127.0.0.1:%d"}
listeners:
  - name: mgp-a
    kind: private
    address: 127.0.0.1:%d
    routes:
      - {cmd: 1, method: /e2e.Echo/A, upstream: echo}
      - {cmd: 2, method: /e2e.Echo/A, upstream: echo}
  - name: mgp-b
    kind: private
    address: 127.0.0.1:%d
    routes:
      - {cmd: 1, method: /e2e.Echo/B, upstream: echo}
      - {cmd: 2, method: /e2e.Echo/B, upstream: echo}
upstreams:
  - name: echo
    protocol: grpc
    endpoints: ["xds:///%s:%d"]
    connections: 1
`, mgAdmin, mgA, mgB, echoHost, w.echoPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRPC_XDS_BOOTSTRAP", boot)
	meshgate := harness.Start(t, "meshgate", mgBin, "run", "-c", mgCfg)
	harness.WaitHTTP200(t, 20*time.Second, fmt.Sprintf("http://127.0.0.1:%d/readyz", mgAdmin))

	// Stock Envoy as the legacy client's sidecar: node metadata as the Istio agent would send
	// it, no interception (real listeners), ADS to istiod's plaintext port.
	envoyAdmin := harness.FreePort(t)
	bootstrap := filepath.Join(base, "envoy.yaml")
	if err := os.WriteFile(bootstrap, []byte(fmt.Sprintf(envoyBootstrap, ns, ns, ns, istioVersion, ns, clusterID, envoyAdmin, xdsPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	envoy := harness.Start(t, "envoy", envoyBin, "-c", bootstrap, "--disable-hot-restart",
		"--base-id", strconv.Itoa(envoyAdmin), "--log-level", "warn", "--component-log-level", "wasm:info,config:info")
	egress := fmt.Sprintf("127.0.0.1:%d", w.egressPort)

	// 1. legacy client → Envoy (istiod config, MGP filter) → MeshGate A → istiod-resolved svc-a.
	eventuallyReply(t, 90*time.Second, "first call through Envoy, MeshGate and xds:///", egress, 1, bodyPrefix("svc-a/A:hello"))
	t.Logf("first reply through istiod-configured Envoy after %v", time.Since(start).Round(time.Millisecond))
	stats := func(name string) (uint64, error) {
		_, body, err := harness.HTTPGet(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=%s", envoyAdmin, name))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(body, "\n") {
			if k, v, ok := strings.Cut(l, ": "); ok && k == name {
				return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
		return 0, fmt.Errorf("%s not in /stats", name)
	}
	harness.Eventually(t, 10*time.Second, "MGP filter stats in Envoy /stats", func() error {
		n, err := stats("wasmcustom.mgp.cmd.1.requests")
		if err == nil && n == 0 {
			err = fmt.Errorf("wasmcustom.mgp.cmd.1.requests = 0")
		}
		return err
	})

	// 2. Move the gRPC service's WorkloadEntry to svc-b: MeshGate follows istiod's EDS.
	w.write(t, mgA, []int{portOf(svcB)}, nil)
	eventuallyReply(t, 30*time.Second, "echo WorkloadEntry moved to svc-b", egress, 1, bodyPrefix("svc-b/A:hello"))

	// 3. Move the MGP gateway's WorkloadEntry to MeshGate's listener B: Envoy follows.
	w.write(t, mgB, []int{portOf(svcB)}, nil)
	eventuallyReply(t, 30*time.Second, "mgp-gateway WorkloadEntry moved to listener B", egress, 1, bodyPrefix("svc-b/B:hello"))

	// 4. Deny cmd 2 in the filter config: Envoy answers it with result 4 (forbidden), cmd 1
	// still passes.
	eventuallyReply(t, 10*time.Second, "cmd 2 allowed before the deny list", egress, 2, bodyPrefix("svc-b/B:hello"))
	w.write(t, mgB, []int{portOf(svcB)}, []uint32{2})
	eventuallyReply(t, 30*time.Second, "cmd 2 denied by the filter", egress, 2, func(f *codec.Frame) error {
		if f.Result != codec.ResultForbidden {
			return fmt.Errorf("result %d body %q, want %d", f.Result, f.Body, codec.ResultForbidden)
		}
		return nil
	})
	eventuallyReply(t, 10*time.Second, "cmd 1 still allowed", egress, 1, bodyPrefix("svc-b/B:hello"))
	if n, err := stats("wasmcustom.mgp.cmd.2.denied"); err != nil || n == 0 {
		t.Fatalf("wasmcustom.mgp.cmd.2.denied = %d, %v", n, err)
	}

	// 5. Two gRPC endpoints behind the ServiceEntry, the chart's DestinationRule hashing on
	// x-mgp-uin: istiod gives MeshGate's xds:/// upstream a ring hash keyed on the uin MeshGate
	// sends, so one user stays on one endpoint and users spread over both.
	w.write(t, mgB, []int{portOf(svcA), portOf(svcB)}, []uint32{2})
	svcOf := func(uin uint64) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		f, err := mgpCall(ctx, egress, 1, uin, "hash")
		if err != nil {
			return "", err
		}
		if f.Result != 0 {
			return "", fmt.Errorf("uin %d: result %d", uin, f.Result)
		}
		svc, _, _ := strings.Cut(string(f.Body), "/")
		return svc, nil
	}
	harness.Eventually(t, 30*time.Second, "both gRPC endpoints in use", func() error {
		seen := map[string]bool{}
		for uin := uint64(1); uin <= 16; uin++ {
			svc, err := svcOf(uin)
			if err != nil {
				return err
			}
			seen[svc] = true
		}
		if len(seen) != 2 {
			return fmt.Errorf("16 users all on %v", seen)
		}
		return nil
	})
	for uin := uint64(1); uin <= 24; uin++ {
		first, err := svcOf(uin)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if got, err := svcOf(uin); err != nil || got != first {
				t.Fatalf("uin %d: %s, then %s (%v): not sticky", uin, first, got, err)
			}
		}
	}

	// Envoy accepted everything istiod pushed (listeners, clusters, routes, the ECDS filter).
	_, rejected, err := harness.HTTPGet(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=update_rejected", envoyAdmin))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(rejected), "\n") {
		if k, v, ok := strings.Cut(l, ": "); !ok || v != "0" {
			t.Errorf("Envoy rejected config from istiod: %s = %s", k, v)
		}
	}
	t.Logf("Envoy accepted all of istiod's config:\n%s", rejected)
	if _, l, err := harness.HTTPGet(fmt.Sprintf("http://127.0.0.1:%d/listeners", envoyAdmin)); err == nil {
		t.Logf("Envoy listeners (from istiod):\n%s", l)
	}

	// Nothing was restarted: every change above reached the running processes.
	for _, p := range []*harness.Proc{istiod, envoy, meshgate} {
		select {
		case <-p.Done():
			t.Fatalf("%s exited during the test", p.Name)
		default:
		}
	}
	t.Logf("istiod e2e done in %v", time.Since(start).Round(time.Millisecond))
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// envoyBootstrap: node id sidecar~IP~POD.NS~NS.svc.cluster.local and the metadata istiod
// needs from an Istio agent; ADS over plaintext gRPC to istiod on loopback.
const envoyBootstrap = `node:
  id: sidecar~127.0.0.1~legacy-client-0.%s~%s.svc.cluster.local
  cluster: legacy-client.%s
  metadata:
    ISTIO_VERSION: "%s"
    NAMESPACE: %s
    CLUSTER_ID: %s
    LABELS: {app: legacy-client}
    INTERCEPTION_MODE: NONE
    WORKLOAD_NAME: legacy-client
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
    - name: xds-grpc
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: xds-grpc
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
`
