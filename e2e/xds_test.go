package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/envoyproc"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/runtime"
	"github.com/meshgate/meshgate/xds"
)

// bridge is the standalone IDC↔cloud deployment on loopback: a legacy MGP
// server and a demo gRPC service, one MeshGate runtime (in-process) with a
// private→gRPC and a gRPC→private listener, MeshGate's control plane
// (in-process, restartable), and two real Envoys configured only over
// xDS: "idc" (state-of-the-world ADS) and "cloud" (delta ADS), mTLS
// between them with certificates delivered by SDS. ADS itself is mutual
// TLS: idc proves its node id with a SPIFFE URI SAN, cloud with the
// default DNS SAN "cloud".
type bridge struct {
	t        *testing.T
	dir      string
	ca       *testpki.CA
	legacy   string
	demo     string
	mgPriv   string
	mgGRPC   string
	xdsAddr  string
	ports    map[string]int
	rt       *runtime.Runtime
	reg      *prometheus.Registry
	xs       *xds.Server
	xsDone   chan error
	idc      *envoyproc.Envoy
	cloud    *envoyproc.Envoy
	idcLeaf  *testpki.Leaf
	cloudLef *testpki.Leaf
	pki      *xdstest.PKI
	idcXDS   testpki.TLSFiles // idc's client certificate towards the control plane
	cloudXDS testpki.TLSFiles
}

// variant selects what the pushed config contains.
type variant struct {
	extraRoute  bool   // idc_grpc: /legacy.Legacy/Uppercase → new cluster cloud_grpc2
	grpcTarget  string // cloud listener idc's cloud_grpc cluster points at
	badEndpoint bool   // cloud_grpc endpoint Envoy must reject (not an IP)
}

func (b *bridge) configYAML(v variant) string {
	p := b.ports
	grpcEP := fmt.Sprintf("127.0.0.1:%d", p[v.grpcTarget])
	if v.badEndpoint {
		grpcEP = "cloud.invalid:443"
	}
	idcTLS := "tls: {cert_file: idc.pem, key_file: idc-key.pem, ca_file: ca.pem, server_name: cloud}"
	cloudTLS := "tls: {cert_file: cloud.pem, key_file: cloud-key.pem, ca_file: ca.pem}"
	extraRoute, extraCluster := "", ""
	if v.extraRoute {
		extraRoute = "\n      routes: [{prefix: /legacy.Legacy/Uppercase, route_to: {cluster: cloud_grpc2}}]"
		extraCluster = fmt.Sprintf("\n    - {name: cloud_grpc2, protocol: grpc, endpoints: [127.0.0.1:%d], %s}", p["cloud_grpc2"], idcTLS)
	}
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 5s, drain_timeout: 2s}
listeners:
- name: private_in
  kind: private
  address: %[1]s
  routes:
  - {cmd: 1, method: /demo.Echo/Echo, upstream: demo}
- name: grpc_in
  kind: grpc
  address: %[2]s
  routes:
  - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
  - {method: /legacy.Legacy/Uppercase, cmd: 2, upstream: legacy}
upstreams:
- {name: demo, protocol: grpc, endpoints: [%[3]q]}
- {name: legacy, protocol: private, endpoints: [%[4]q]}
xds:
  address: %[5]s
  cert_poll: 100ms
  %[16]s
  envoy:
  - node: idc
    admin_address: 127.0.0.1:0
    identities: ["spiffe://meshgate.e2e/ns/edge/sa/idc"]
    xds_tls: %[17]s
    listeners:
    - {name: idc_private, address: 127.0.0.1:%[6]d, protocol: private, route_to: {cluster: cloud_private}}
    - name: idc_grpc
      address: 127.0.0.1:%[7]d
      protocol: grpc
      route_to: {cluster: cloud_grpc}%[8]s
    clusters:
    - {name: cloud_private, protocol: private, endpoints: [127.0.0.1:%[9]d], %[10]s}
    - {name: cloud_grpc, protocol: grpc, endpoints: [%[11]q], %[10]s}%[12]s
  - node: cloud
    admin_address: 127.0.0.1:0
    xds_tls: %[18]s
    listeners:
    - {name: cloud_private, address: 127.0.0.1:%[9]d, protocol: private, %[13]s, route_to: {meshgate_listener: private_in}}
    - {name: cloud_grpc, address: 127.0.0.1:%[14]d, protocol: grpc, %[13]s, route_to: {meshgate_listener: grpc_in}}
    - {name: cloud_grpc2, address: 127.0.0.1:%[15]d, protocol: grpc, %[13]s, route_to: {meshgate_listener: grpc_in}}
  grpc_clients:
  - name: legacy-bridge
    route_to: {meshgate_listener: grpc_in}
`, b.mgPriv, b.mgGRPC, b.demo, b.legacy, b.xdsAddr,
		p["idc_private"], p["idc_grpc"], extraRoute, p["cloud_private"], idcTLS, grpcEP, extraCluster,
		cloudTLS, p["cloud_grpc"], p["cloud_grpc2"], serverYAML(b.pki), b.idcXDS.YAML(), b.cloudXDS.YAML())
}

func (b *bridge) config(v variant) *config.Config {
	b.t.Helper()
	cfg, err := config.Parse([]byte(b.configYAML(v)), b.dir)
	if err != nil {
		b.t.Fatalf("config: %v", err)
	}
	return cfg
}

func (b *bridge) issueCerts() {
	b.t.Helper()
	var err error
	if b.idcLeaf, _, _, err = b.ca.IssueFiles(b.dir, "idc"); err != nil {
		b.t.Fatal(err)
	}
	if b.cloudLef, _, _, err = b.ca.IssueFiles(b.dir, "cloud"); err != nil {
		b.t.Fatal(err)
	}
}

// startXDS starts the control plane on b.xdsAddr, then sets b.xdsAddr to
// the address it bound (the first start listens on port 0; a restart
// listens where the Envoys reconnect).
func (b *bridge) startXDS(cfg *config.Config) {
	b.t.Helper()
	b.reg = prometheus.NewRegistry()
	b.xs = xds.NewServer(xds.Options{Logger: testLogger(b.t, "xds"), Registerer: b.reg})
	if err := b.xs.Update(xdstest.Model(b.t, cfg)); err != nil {
		b.t.Fatal(err)
	}
	addr, err := b.xs.Listen()
	if err != nil {
		b.t.Fatal(err)
	}
	b.xdsAddr = addr.String()
	done := make(chan error, 1)
	xs := b.xs
	go func() { done <- xs.Serve(context.Background()) }()
	b.xsDone = done
}

func (b *bridge) stopXDS() {
	b.xs.Close()
	select {
	case err := <-b.xsDone:
		if err != nil {
			b.t.Errorf("xds serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		b.t.Fatal("xds server did not stop")
	}
}

func newBridge(t *testing.T) *bridge {
	envoyproc.Require(t)
	b := &bridge{t: t, dir: t.TempDir(), ports: map[string]int{}, xdsAddr: "127.0.0.1:0", mgPriv: "127.0.0.1:0", mgGRPC: "127.0.0.1:0"}
	// Envoy's listeners come from xDS, which needs concrete ports.
	for _, n := range []string{"idc_private", "idc_grpc", "cloud_private", "cloud_grpc", "cloud_grpc2"} {
		b.ports[n] = harness.FreePort(t)
	}
	var err error
	if b.ca, err = testpki.NewCA("meshgate-e2e-ca"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ca.WriteCA(b.dir); err != nil {
		t.Fatal(err)
	}
	b.issueCerts()
	b.pki = xdstest.NewPKI(t, b.dir, b.ca)
	b.idcXDS = b.pki.Client(t, "idc-xds", "spiffe://meshgate.e2e/ns/edge/sa/idc")
	b.cloudXDS = b.pki.Client(t, "cloud-xds", "cloud")

	// Old world and new world.
	_, b.legacy = testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	b.demo = testkit.Demo(t)

	// The data path runs in-process without the xds section: this test
	// runs the control plane itself so it can restart it. Its listeners
	// bind port 0; the xds section names them by the addresses they got.
	dataYAML, _, _ := strings.Cut(b.configYAML(variant{grpcTarget: "cloud_grpc"}), "\nxds:")
	dataOnly, err := config.Parse([]byte(dataYAML), b.dir)
	if err != nil {
		t.Fatalf("data path config: %v", err)
	}
	if b.rt, err = runtime.New(dataOnly, runtime.Options{NoAdmin: true, Logger: testLogger(t, "meshgate")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.rt.Close)
	b.mgPriv, b.mgGRPC = b.rt.Addr("private_in").String(), b.rt.Addr("grpc_in").String()
	b.startXDS(b.config(variant{grpcTarget: "cloud_grpc"}))
	t.Cleanup(func() { b.xs.Close() })
	cfg := b.config(variant{grpcTarget: "cloud_grpc"}) // with the bound xds address

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range []struct {
		node  string
		delta bool
		into  **envoyproc.Envoy
	}{{"idc", false, &b.idc}, {"cloud", true, &b.cloud}} {
		// The same function `meshgate envoy-bootstrap` uses.
		boot, err := xds.Bootstrap(xdstest.Model(t, cfg), n.node, xds.BootstrapOptions{Delta: n.delta})
		if err != nil {
			t.Fatal(err)
		}
		*n.into = envoyproc.StartT(t, ctx, envoyproc.Options{Bootstrap: boot})
	}
	return b
}

func testLogger(t *testing.T, component string) *slogLogger { return newSlog(t, component) }

// traffic drives both paths until stopped and counts failures.
type traffic struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func (tr *traffic) fail(what string, err error) {
	tr.failed.Add(1)
	tr.mu.Lock()
	if len(tr.errs) < 10 {
		tr.errs = append(tr.errs, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), what, err))
	}
	tr.mu.Unlock()
}

// mgpCall: MGP client → Envoy(idc) → mTLS → Envoy(cloud) → MeshGate → demo gRPC.
func mgpCall(ctx context.Context, c *legacy.Client, body string) error {
	resp, err := c.Call(ctx, 1, 42, []byte(body), nil)
	if err != nil {
		return err
	}
	if resp.Result != 0 || string(resp.Body) != body {
		return fmt.Errorf("result %d body %q", resp.Result, resp.Body)
	}
	return nil
}

// dialMGPWhenReady dials addr until an echo call with body succeeds (Envoy
// may still be taking its listeners from xDS) and returns the client,
// closed when the test ends.
func dialMGPWhenReady(t testing.TB, addr string, conns int, body, what string) *legacy.Client {
	t.Helper()
	var mc *legacy.Client
	harness.Eventually(t, 30*time.Second, what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := legacy.Dial(ctx, addr, legacy.ClientOptions{Conns: conns})
		if err != nil {
			return err
		}
		if err := mgpCall(ctx, c, body); err != nil {
			c.Close()
			return err
		}
		mc = c
		return nil
	})
	t.Cleanup(func() { mc.Close() })
	return mc
}

// grpcCall: grpc-go → Envoy(idc) → mTLS → Envoy(cloud) → MeshGate → legacy MGP server.
func grpcCall(ctx context.Context, cc *grpc.ClientConn, method, body, want string) error {
	var out []byte
	if err := cc.Invoke(ctx, method, []byte(body), &out); err != nil {
		return err
	}
	if string(out) != want {
		return fmt.Errorf("%s: got %q want %q", method, out, want)
	}
	return nil
}

func (b *bridge) clients() (*legacy.Client, *grpc.ClientConn) {
	b.t.Helper()
	mc := dialMGPWhenReady(b.t, fmt.Sprintf("127.0.0.1:%d", b.ports["idc_private"]), 2, "warm", "MGP call through both Envoys")
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", b.ports["idc_grpc"]),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { cc.Close() })
	harness.Eventually(b.t, 20*time.Second, "gRPC call through both Envoys", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return grpcCall(ctx, cc, "/legacy.Legacy/Echo", "warm", "warm")
	})
	return mc, cc
}

func startTraffic(mc *legacy.Client, cc *grpc.ClientConn) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	loop := func(name string, call func(ctx context.Context, i int) error) {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-tr.stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := call(ctx, i)
				cancel()
				if err != nil {
					tr.fail(name, err)
				} else {
					tr.ok.Add(1)
				}
			}
		}()
	}
	loop("mgp", func(ctx context.Context, i int) error { return mgpCall(ctx, mc, fmt.Sprintf("m%d", i)) })
	loop("grpc-echo", func(ctx context.Context, i int) error {
		return grpcCall(ctx, cc, "/legacy.Legacy/Echo", fmt.Sprintf("g%d", i), fmt.Sprintf("g%d", i))
	})
	loop("grpc-upper", func(ctx context.Context, i int) error {
		return grpcCall(ctx, cc, "/legacy.Legacy/Uppercase", fmt.Sprintf("u%d", i), fmt.Sprintf("U%d", i))
	})
	return tr
}

func (tr *traffic) finish(t *testing.T, phase string) {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	t.Logf("%s: %d requests ok, %d failed", phase, tr.ok.Load(), tr.failed.Load())
	if tr.failed.Load() != 0 {
		t.Errorf("%s: %d failed requests: %s", phase, tr.failed.Load(), strings.Join(tr.errs, "; "))
	}
	if tr.ok.Load() < 30 {
		t.Errorf("%s: only %d requests went through", phase, tr.ok.Load())
	}
}

func (b *bridge) push(v variant) {
	b.t.Helper()
	if err := b.xs.Update(xdstest.Model(b.t, b.config(v))); err != nil {
		b.t.Fatalf("push: %v", err)
	}
}

func dumpContains(e *envoyproc.Envoy, subs ...string) error {
	d, err := e.ConfigDump()
	if err != nil {
		return err
	}
	for _, s := range subs {
		if !strings.Contains(string(d), s) {
			return fmt.Errorf("config_dump lacks %q", s)
		}
	}
	return nil
}

// TestXDSBridge: both data paths through two xDS-configured Envoys with
// mTLS; live pushes (route + cluster, endpoint move, certificate
// rotation) with zero failed requests; a NACKed push; a control-plane
// restart.
func TestXDSBridge(t *testing.T) {
	start := time.Now()
	b := newBridge(t)
	mc, cc := b.clients()
	t.Logf("setup: %v", time.Since(start).Round(time.Millisecond))

	// 1. Changes while traffic flows.
	tr := startTraffic(mc, cc)
	time.Sleep(300 * time.Millisecond)

	t0 := time.Now()
	b.push(variant{grpcTarget: "cloud_grpc", extraRoute: true})
	t.Logf("add route+cluster: Update returned after %v (3 make-before-break phases)", time.Since(t0).Round(time.Millisecond))
	harness.Eventually(t, 15*time.Second, "route to the new cluster used", func() error {
		if err := dumpContains(b.idc, `"cloud_grpc2"`, `/legacy.Legacy/Uppercase`); err != nil {
			return err
		}
		if n := b.idc.Stat("cluster.cloud_grpc2.upstream_rq_total"); n == 0 {
			return errors.New("no request on cloud_grpc2 yet")
		}
		return nil
	})

	t0 = time.Now()
	b.push(variant{grpcTarget: "cloud_grpc2", extraRoute: true})
	harness.Eventually(t, 10*time.Second, "idc ACKed the endpoint move", func() error {
		if v := b.xs.AckedVersion("idc", "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"); v != b.xs.Version() {
			return fmt.Errorf("EDS ACKed %q", v)
		}
		return nil
	})
	t.Logf("endpoint move: pushed and ACKed in %v", time.Since(t0).Round(time.Millisecond))
	moved := fmt.Sprintf("cloud_grpc::127.0.0.1:%d::", b.ports["cloud_grpc2"])
	harness.Eventually(t, 15*time.Second, "endpoint moved", func() error {
		cl, err := b.idc.AdminGet("/clusters")
		if err != nil {
			return err
		}
		if !strings.Contains(string(cl), moved) {
			return errors.New("cloud_grpc not moved yet")
		}
		if strings.Contains(string(cl), fmt.Sprintf("cloud_grpc::127.0.0.1:%d::", b.ports["cloud_grpc"])) {
			return errors.New("old endpoint still listed")
		}
		return nil
	})
	before := b.cloud.Stat("listener.127.0.0.1_" + fmt.Sprint(b.ports["cloud_grpc2"]) + ".downstream_cx_total")
	time.Sleep(300 * time.Millisecond)
	t.Logf("cloud_grpc2 downstream connections after move: %d", before)

	t0 = time.Now()
	b.rotateAndCheck()
	t.Logf("certificate rotation: files rewritten → both Envoys serve the new serials in %v (cert_poll 100ms)", time.Since(t0).Round(time.Millisecond))
	// A brand-new connection handshakes with the rotated certificates.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fresh := testkit.LegacyClient(t, fmt.Sprintf("127.0.0.1:%d", b.ports["idc_private"]), legacy.ClientOptions{})
	if err := mgpCall(ctx, fresh, "after-rotation"); err != nil {
		t.Fatalf("new connection after rotation: %v", err)
	}
	fresh.Close()
	time.Sleep(300 * time.Millisecond)
	tr.finish(t, "pushes under load")
	if t.Failed() {
		b.logErrorStats()
	}
	t.Logf("pushes done: %v", time.Since(start).Round(time.Millisecond))

	// 2. A push Envoy rejects: reported, not re-sent, old config kept.
	good := variant{grpcTarget: "cloud_grpc2", extraRoute: true}
	b.push(variant{grpcTarget: "cloud_grpc2", extraRoute: true, badEndpoint: true})
	harness.Eventually(t, 15*time.Second, "NACK reported", func() error {
		if b.xs.NackCheck() == nil {
			return errors.New("no NACK yet")
		}
		return nil
	})
	nerr := b.xs.NackCheck()
	if !errors.Is(nerr, xds.ErrNack) || !strings.Contains(nerr.Error(), "idc") {
		t.Fatalf("NackCheck = %v", nerr)
	}
	t.Logf("NACK: %v", nerr)
	eds := "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	if n := testutil.ToFloat64(mustCounter(t, b.reg, "meshgate_xds_nacks_total", eds)); n != 1 {
		t.Fatalf("meshgate_xds_nacks_total{type_url=%s} = %v, want 1", eds, n)
	}
	reqs := b.xs.NackRequests()
	tr = startTraffic(mc, cc)
	time.Sleep(time.Second)
	if d := b.xs.NackRequests() - reqs; d > 2 {
		t.Fatalf("%d more NACKs in 1s: the rejected version is being re-sent", d)
	}
	// Envoy kept the last accepted endpoints.
	if cl, err := b.idc.AdminGet("/clusters"); err != nil || !strings.Contains(string(cl), moved) {
		t.Fatalf("after NACK, /clusters lacks %s (err %v)", moved, err)
	}
	tr.finish(t, "while NACKed")
	b.push(good)
	harness.Eventually(t, 15*time.Second, "NACK cleared by a good push", b.xs.NackCheck)

	// 3. Control-plane restart: Envoy keeps serving, reconnects, accepts
	// the new process's (never seen) version.
	tr = startTraffic(mc, cc)
	oldVersion := b.xs.Version()
	b.stopXDS()
	time.Sleep(500 * time.Millisecond)
	b.startXDS(b.config(good))
	newVersion := b.xs.Version()
	if newVersion == oldVersion {
		t.Fatalf("restart reused version %s", oldVersion)
	}
	for _, e := range []*envoyproc.Envoy{b.idc, b.cloud} {
		harness.Eventually(t, 30*time.Second, "Envoy reconnected to the restarted control plane", func() error {
			if e.Stat("control_plane.connected_state") != 1 {
				return errors.New("not connected")
			}
			return nil
		})
	}
	// The SotW node (idc) ACKs the new process's version (which it never
	// saw before) for clusters; Envoy skips re-applying identical resources.
	harness.Eventually(t, 15*time.Second, "idc ACKed the new version", func() error {
		if v := b.xs.AckedVersion("idc", "type.googleapis.com/envoy.config.cluster.v3.Cluster"); v != newVersion {
			return fmt.Errorf("idc CDS ACKed %q, want %q", v, newVersion)
		}
		return nil
	})
	// Both accept a new change from the restarted control plane.
	b.rotateAndCheck()
	for _, node := range []string{"idc", "cloud"} {
		harness.Eventually(t, 10*time.Second, node+" ACKed the rotated secrets", func() error {
			if v := b.xs.AckedVersion(node, "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"); v != b.xs.Version() {
				return fmt.Errorf("%s SDS ACKed %q, want %q", node, v, b.xs.Version())
			}
			return nil
		})
	}
	if err := b.xs.NackCheck(); err != nil {
		t.Fatal(err)
	}
	tr.finish(t, "control-plane restart")
	t.Logf("total: %v", time.Since(start).Round(time.Millisecond))
}

// rotateAndCheck reissues both leaf certificates in place and waits until
// each Envoy serves the new serial (and no longer the old one).
func (b *bridge) rotateAndCheck() {
	b.t.Helper()
	oldIDC, oldCloud := b.idcLeaf.Serial(), b.cloudLef.Serial()
	b.issueCerts() // atomic rename; the control plane polls the files
	for _, c := range []struct {
		e      *envoyproc.Envoy
		serial string
		old    string
	}{{b.idc, b.idcLeaf.Serial(), oldIDC}, {b.cloud, b.cloudLef.Serial(), oldCloud}} {
		harness.Eventually(b.t, 15*time.Second, "new certificate serial in /certs", func() error {
			certs, err := c.e.AdminGet("/certs")
			if err != nil {
				return err
			}
			s := strings.ToLower(string(certs))
			if !strings.Contains(s, c.serial) {
				return fmt.Errorf("serial %s not in /certs", c.serial)
			}
			if strings.Contains(s, c.old) {
				return fmt.Errorf("old serial %s still in /certs", c.old)
			}
			return nil
		})
	}
}

// logErrorStats logs the Envoy counters that explain failed requests.
func (b *bridge) logErrorStats() {
	for name, e := range map[string]*envoyproc.Envoy{"idc": b.idc, "cloud": b.cloud} {
		st, err := e.Stats()
		if err != nil {
			continue
		}
		for k, v := range st {
			if v == 0 {
				continue
			}
			for _, pat := range []string{"no_cluster", "no_route", "connect_fail", "ssl.fail", "handshake_error", "rq_503", "upstream_rq_5", "reset", "rq_timeout", "cx_destroy_with_active_rq", "protocol_error", "rq_retry", "overflow", "none_healthy", "rq_pending_failure"} {
				if strings.Contains(k, pat) {
					b.t.Logf("%s %s = %d", name, k, v)
				}
			}
		}
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name, typeURL string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type_url" && l.GetValue() == typeURL {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("%s{type_url=%s} not found", name, typeURL)
	return nil
}
