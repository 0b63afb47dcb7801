package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a demo gRPC service whose test.Svc/Who answers its name.
func backend(t *testing.T, name string) string { return testkit.Who(t, name) }

func yamlConfig(grpcEP string, extra string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s, drain_timeout: 5s}
listeners:
  - name: mgp-in
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 1, method: /demo.Echo/Echo, upstream: demo}
      - {cmd: 2, method: /test.Svc/Who, upstream: demo}
      - {cmd: 4, method: /demo.Echo/Sleep, upstream: demo}
%s
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q], connections: 2}
`, extra, grpcEP)
}

func mustParse(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func start(t *testing.T, cfg *config.Config) *Runtime {
	t.Helper()
	return startWith(t, cfg, Options{DrainQuiet: 100 * time.Millisecond})
}

// startWith is a Runtime of cfg with opts, closed at cleanup.
func startWith(t *testing.T, cfg *config.Config, opts Options) *Runtime {
	t.Helper()
	if cfg.Admin.Address == "127.0.0.1:9901" {
		// The default: a fixed port another process (make run) may hold.
		cfg.Admin.Address = "127.0.0.1:0"
	}
	rt, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	return rt
}

// startReady is start, then waits for /readyz: every upstream connected
// (a config that routes to its own listeners connects only once they are
// bound, after start-up's warm-up).
func startReady(t *testing.T, cfg *config.Config) *Runtime {
	t.Helper()
	rt := start(t, cfg)
	testkit.Succeeds(t, testkit.Context(t, 15*time.Second), 10*time.Millisecond, rt.Admin().Ready, "not ready within 15s")
	return rt
}

func dial(t *testing.T, rt *Runtime, listener string, conns int) *legacy.Client {
	t.Helper()
	return testkit.LegacyClient(t, rt.Addr(listener).String(), legacy.ClientOptions{Conns: conns})
}

func call(cl *legacy.Client, cmd uint32, body string) (*codec.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return cl.Call(ctx, cmd, 1, []byte(body), nil)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return testkit.Get(t, url)
}

func TestBridgeAdminMetrics(t *testing.T) {
	ep := backend(t, "A")
	cfg := mustParse(t, yamlConfig(ep, `
  - name: secure
    kind: private
    address: 127.0.0.1:0
    auth: {keys: {1: "topsecret-key"}}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]`))
	rt := start(t, cfg)
	cl := dial(t, rt, "mgp-in", 1)
	for i := 0; i < 20; i++ {
		r, err := call(cl, 1, "hello")
		if err != nil || r.Result != 0 || string(r.Body) != "hello" {
			t.Fatalf("echo: %+v %v", r, err)
		}
	}
	r, err := call(cl, 2, "")
	if err != nil || string(r.Body) != "A" {
		t.Fatalf("who: %+v %v", r, err)
	}
	base := "http://" + rt.AdminAddr().String()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	rt.Admin().SetReadiness("xds", func() error { return errors.New("NACKed") })
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "xds: NACKed") {
		t.Fatalf("/readyz with failing check: %d %s", code, body)
	}
	rt.Admin().SetReadiness("xds", nil)
	// inbound decrements the in-flight gauge just after writing the reply.
	waitFor(t, func() bool { return testutil.ToFloat64(rt.Metrics().InFlight.WithLabelValues("mgp-in")) == 0 })
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`meshgate_requests_total{code="OK",listener="mgp-in",route="1",upstream="demo"} 20`,
		`meshgate_request_duration_seconds_count{listener="mgp-in",route="1",upstream="demo"} 20`,
		`meshgate_downstream_connections{listener="mgp-in"} 1`,
		`meshgate_upstream_connections{kind="clientconn",upstream="demo"} 2`,
		`meshgate_requests_in_flight{listener="mgp-in"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	_, cj := get(t, base+"/config")
	if !strings.Contains(cj, `"name": "mgp-in"`) || strings.Contains(cj, "topsecret") {
		t.Errorf("/config: %s", cj)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof %d, want 404 (off unless admin.pprof)", code)
	}
}

// load runs workers sequential callers until stop; it returns ok and
// failed counts.
func load(t *testing.T, cl *legacy.Client, cmd uint32, workers int, stop <-chan struct{}) func() (int64, int64, []error) {
	return testkit.Load(workers, stop, func() error {
		r, err := call(cl, cmd, "x")
		if err == nil && r.Result != 0 {
			err = fmt.Errorf("result %d", r.Result)
		}
		return err
	})
}

func TestReloadUnderLoad(t *testing.T) {
	epA, epB := backend(t, "A"), backend(t, "B")
	rt := start(t, mustParse(t, yamlConfig(epA, "")))
	cl := dial(t, rt, "mgp-in", 4)
	stop := make(chan struct{})
	wait := load(t, cl, 2, 8, stop)
	eps := []string{epB, epA}
	for i := 0; i < 10; i++ {
		time.Sleep(40 * time.Millisecond)
		// Alternate the upstream endpoint (new pool, old one retired) and
		// the route timeout (same pool, new table).
		cfg := mustParse(t, strings.Replace(yamlConfig(eps[i%2], ""), "timeout: 2s", fmt.Sprintf("timeout: %ds", 2+i), 1))
		if err := rt.Reload(cfg); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	okN := testkit.NoFailures(t, wait)
	t.Logf("%d requests across 10 reloads, 0 failed", okN)
	// The last config (i=9) points at A.
	r, err := call(cl, 2, "")
	if err != nil || string(r.Body) != "A" {
		t.Fatalf("after reloads: %+v %v", r, err)
	}
	// Retired pools closed once idle: only the live pool's conns count.
	conns := rt.Metrics().UpstreamConns.WithLabelValues("demo", "clientconn")
	waitFor(t, func() bool { return testutil.ToFloat64(conns) == 2 })
	// An upstream-unchanged reload keeps the pool; a changed one replaces it.
	p := rt.Pool("demo")
	if err := rt.Reload(mustParse(t, strings.Replace(yamlConfig(epA, ""), "timeout: 2s", "timeout: 9s", 1))); err != nil {
		t.Fatal(err)
	}
	if rt.Pool("demo") != p {
		t.Fatal("unchanged upstream got a new pool")
	}
	if err := rt.Reload(mustParse(t, yamlConfig(epB, ""))); err != nil {
		t.Fatal(err)
	}
	if rt.Pool("demo") == p {
		t.Fatal("changed upstream kept its pool")
	}
	if r, err := call(cl, 2, ""); err != nil || string(r.Body) != "B" {
		t.Fatalf("after switch to B: %+v %v", r, err)
	}
	testkit.Receive(t, p.Done(), 3*time.Second, "retired pool not closed")
}

func TestBadReloadRejected(t *testing.T) {
	ep := backend(t, "A")
	rt := start(t, mustParse(t, yamlConfig(ep, "")))
	cl := dial(t, rt, "mgp-in", 1)
	bad := mustParse(t, yamlConfig(ep, ""))
	bad.Listeners[0].Routes[0].Upstream = "nope"
	err := rt.Reload(bad)
	if err == nil || !strings.Contains(err.Error(), "listeners[0].routes[0].upstream") {
		t.Fatalf("bad reload error: %v", err)
	}
	// A config that validates but cannot be built (address in use).
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	bad2 := mustParse(t, yamlConfig(ep, fmt.Sprintf(`
  - name: extra
    kind: private
    address: %s
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]`, busy.Addr())))
	if err := rt.Reload(bad2); err == nil || !strings.Contains(err.Error(), "listeners[1]") {
		t.Fatalf("address in use: %v", err)
	}
	if rt.Addr("extra") != nil {
		t.Fatal("rejected listener is running")
	}
	if r, err := call(cl, 1, "still"); err != nil || string(r.Body) != "still" {
		t.Fatalf("old config not serving: %+v %v", r, err)
	}
	_, m := get(t, "http://"+rt.AdminAddr().String()+"/metrics")
	if !strings.Contains(m, `meshgate_config_reloads_total{outcome="rejected"} 2`) {
		t.Errorf("reload metric missing")
	}
}

// TestWatchCatchesUpWithEarlierEdit: a file edited after the runtime
// loaded it but before Watch began (no fsnotify event will ever come for
// it) is applied when Watch starts, not taken as the baseline.
func TestWatchCatchesUpWithEarlierEdit(t *testing.T) {
	ep := backend(t, "A")
	path := filepath.Join(t.TempDir(), "meshgate.yaml")
	if err := os.WriteFile(path, []byte(yamlConfig(ep, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := start(t, mustLoad(t, path))
	if err := os.WriteFile(path, []byte(yamlConfig(ep, `
  - name: early
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 9, method: /test.Svc/Who, upstream: demo}]`)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); _ = rt.Watch(ctx, path, nil) }()
	defer func() { cancel(); <-watched }()
	waitFor(t, func() bool {
		return rt.Addr("early") != nil && testutil.ToFloat64(rt.Metrics().Reloads.WithLabelValues("ok")) >= 1
	})
}

func TestListenersAddedRemovedAndWatch(t *testing.T) {
	ep := backend(t, "A")
	dir := t.TempDir()
	path := filepath.Join(dir, "meshgate.yaml")
	if err := os.WriteFile(path, []byte(yamlConfig(ep, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := start(t, mustLoad(t, path))
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); _ = rt.Watch(ctx, path, nil) }()
	defer func() { cancel(); <-watched }()
	// Add a listener by editing the file (before or after the watch is in
	// place: Watch catches up with an edit it had no event for).
	withExtra := yamlConfig(ep, `
  - name: extra
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 9, method: /test.Svc/Who, upstream: demo}]`)
	if err := os.WriteFile(path, []byte(withExtra), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rt.Addr("extra") != nil })
	cl := dial(t, rt, "extra", 1)
	if r, err := call(cl, 9, ""); err != nil || string(r.Body) != "A" {
		t.Fatalf("new listener: %+v %v", r, err)
	}
	// A broken file is rejected; the listener stays.
	if err := os.WriteFile(path, []byte("listeners: [{name: x, kind: bogus}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Wait for the rejection itself (not a fixed sleep), then check.
	waitFor(t, func() bool { return testutil.ToFloat64(rt.Metrics().Reloads.WithLabelValues("rejected")) >= 1 })
	if rt.Addr("extra") == nil {
		t.Fatal("bad file removed the listener")
	}
	// Remove it again.
	if err := os.WriteFile(path, []byte(yamlConfig(ep, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rt.Addr("extra") == nil })
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testkit.Within(t, 5*time.Second, "the condition", cond)
}

func TestShutdownDrainUnderLoad(t *testing.T) {
	ep := backend(t, "A")
	rt, err := New(mustParse(t, yamlConfig(ep, "")), Options{DrainQuiet: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cl := dial(t, rt, "mgp-in", 4)
	stop := make(chan struct{})
	wait := load(t, cl, 1, 8, stop)
	time.Sleep(150 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- rt.Shutdown(context.Background()) }()
	time.Sleep(200 * time.Millisecond)
	if code := readyz(rt); code != 503 {
		t.Errorf("/readyz while draining: %d", code)
	}
	close(stop)
	okN := testkit.NoFailures(t, wait)
	testkit.Returns(t, done, 6*time.Second, "Shutdown")
	t.Logf("%d requests, 0 failed, across drain", okN)
}

func readyz(rt *Runtime) int {
	if err := rt.Admin().Ready(); err != nil {
		return 503
	}
	return 200
}

func mustLoad(t *testing.T, path string) *config.Config {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestListenerReplacedOnSamePort: a socket-level change (max_frame_size)
// rebinds the same port; connections open on the old server keep being
// served while it drains.
func TestListenerReplacedOnSamePort(t *testing.T) {
	ep := backend(t, "A")
	addr := testkit.FreeAddr(t)
	y := strings.Replace(yamlConfig(ep, ""), "address: 127.0.0.1:0", "address: "+addr, 1)
	rt := start(t, mustParse(t, y))
	old := dial(t, rt, "mgp-in", 1)
	if r, err := call(old, 1, "a"); err != nil || string(r.Body) != "a" {
		t.Fatalf("before: %+v %v", r, err)
	}
	y2 := strings.Replace(y, "kind: private\n", "kind: private\n    max_frame_size: 65536\n", 1)
	if err := rt.Reload(mustParse(t, y2)); err != nil {
		t.Fatal(err)
	}
	if got := rt.Addr("mgp-in").String(); got != addr {
		t.Fatalf("rebound on %s, want %s", got, addr)
	}
	if r, err := call(old, 1, "b"); err != nil || string(r.Body) != "b" {
		t.Fatalf("old connection during drain: %+v %v", r, err)
	}
	fresh := dial(t, rt, "mgp-in", 1)
	if r, err := call(fresh, 1, "c"); err != nil || string(r.Body) != "c" {
		t.Fatalf("new listener: %+v %v", r, err)
	}
}

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
