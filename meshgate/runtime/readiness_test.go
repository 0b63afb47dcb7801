package runtime

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// serveDemoOn starts the demo gRPC service on addr; stop stops it.
func serveDemoOn(t *testing.T, addr string) (stop func()) {
	t.Helper()
	st := &testkit.Stub{Listener: testkit.Listen(t, addr)}
	st.Start(t)
	return st.Server.Stop
}

// lateDemo binds a loopback socket now (no "free port" race: the address
// stays ours) and serves the demo gRPC service on it only when serve is
// called. Until then a client's TCP connect lands in the backlog and its
// HTTP/2 handshake waits: the upstream is down as far as readiness goes.
func lateDemo(t *testing.T) (addr string, serve func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := demo.NewServer()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { _ = ln.Close() })
		gs.Stop()
	})
	return ln.Addr().String(), func() { once.Do(func() { go func() { _ = gs.Serve(ln) }() }) }
}

func bothWaysConfig(grpcUp, legacyUp, extra string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s, drain_timeout: 5s, drain_grace: 1s}
listeners:
  - name: mgp-in
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    routes: [{method: /legacy.Legacy/*, cmd: 1, upstream: legacy}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]%s}
  - {name: legacy, protocol: private, endpoints: [%q]}
`, grpcUp, extra, legacyUp)
}

func healthOf(cc *grpc.ClientConn, svc string) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return -1
	}
	return r.Status
}

// TestReadinessFollowsLateUpstreams: with both upstreams down at start,
// /readyz is 503 naming them and the gRPC listener's health service says
// NOT_SERVING for the routed service; as the real backends come up late,
// readiness turns 200 only when both are connected, health turns SERVING,
// and calls both ways succeed at once. (Readiness used to be 200 from the
// start while calls failed with "no healthy endpoint".)
func TestReadinessFollowsLateUpstreams(t *testing.T) {
	gAddr, serveG := lateDemo(t)
	lAddr := testkit.FreeAddr(t) // a private endpoint must refuse connections to count as down
	cfg := mustParse(t, bothWaysConfig(gAddr, lAddr, ""))
	rt := startWith(t, cfg, Options{DrainQuiet: 100 * time.Millisecond, WarmUp: -1})
	err := rt.Admin().Ready()
	if err == nil || !strings.Contains(err.Error(), "demo") || !strings.Contains(err.Error(), "legacy") {
		t.Fatalf("ready with both upstreams down: %v", err)
	}
	cc := testkit.Client(t, rt.Addr("grpc-in").String())
	waitFor(t, func() bool { return healthOf(cc, "legacy.Legacy") == healthpb.HealthCheckResponse_NOT_SERVING })
	if st := healthOf(cc, ""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("overall health %v", st)
	}

	serveG()
	waitFor(t, func() bool {
		err := rt.Admin().Ready()
		return err != nil && !strings.Contains(err.Error(), "demo")
	})
	if err := rt.Admin().Ready(); err == nil || !strings.Contains(err.Error(), "legacy") {
		t.Fatalf("ready with legacy down: %v", err)
	}

	testkit.Legacy(t, testkit.Listen(t, lAddr), nil, legacy.ServerOptions{})
	waitFor(t, func() bool { return rt.Admin().Ready() == nil })
	cl := dial(t, rt, "mgp-in", 1)
	if r, err := call(cl, 1, "ping"); err != nil || r.Result != 0 || string(r.Body) != "ping" {
		t.Fatalf("MGP→gRPC once ready: %+v %v", r, err)
	}
	var out []byte
	ctx := testkit.Context(t, 2*time.Second)
	if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte("pong"), &out); err != nil || string(out) != "pong" {
		t.Fatalf("gRPC→MGP once ready: %q %v", out, err)
	}
	waitFor(t, func() bool { return healthOf(cc, "legacy.Legacy") == healthpb.HealthCheckResponse_SERVING })
}

// TestReadinessModes: readiness "none" ignores the upstreams, "any" needs
// one of them connected.
func TestReadinessModes(t *testing.T) {
	gAddr, serveG := lateDemo(t)
	lAddr := testkit.FreeAddr(t)
	for _, c := range []struct {
		mode string
		up   bool // start the grpc backend
		want bool
	}{{"none", false, true}, {"any", false, false}, {"any", true, true}} {
		t.Run(fmt.Sprintf("%s/%v", c.mode, c.up), func(t *testing.T) {
			if c.up {
				serveG()
			}
			rt := startWith(t, mustParse(t, "readiness: "+c.mode+"\n"+bothWaysConfig(gAddr, lAddr, "")), Options{WarmUp: -1})
			if c.want {
				waitFor(t, func() bool { return rt.Admin().Ready() == nil })
			} else if got := rt.Admin().Ready() == nil; got {
				t.Fatal("ready with every upstream down")
			}
		})
	}
}

// TestDrainGraceAcceptsNewGRPCClients: after Shutdown starts, a gRPC
// client that connects during drain_grace is served (no "connection
// refused") while the health service already says NOT_SERVING; after the
// grace the listener stops. (Shutdown used to close the socket at once.)
func TestDrainGraceAcceptsNewGRPCClients(t *testing.T) {
	gAddr := backend(t, "A")
	ls, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	rt := startWith(t, mustParse(t, bothWaysConfig(gAddr, ls.Addr().String(), "")), Options{DrainQuiet: 100 * time.Millisecond})
	addr := rt.Addr("grpc-in").String()
	before := testkit.Client(t, addr)
	waitFor(t, func() bool { return healthOf(before, "legacy.Legacy") == healthpb.HealthCheckResponse_SERVING })

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- rt.Shutdown(context.Background()) }()
	waitFor(t, func() bool { return healthOf(before, "legacy.Legacy") == healthpb.HealthCheckResponse_NOT_SERVING })
	// A brand-new client connecting during the grace period is served.
	late := testkit.Client(t, addr)
	var out []byte
	ctx := testkit.Context(t, 2*time.Second)
	if err := late.Invoke(ctx, "/legacy.Legacy/Echo", []byte("late"), &out); err != nil || string(out) != "late" {
		t.Fatalf("new client during drain grace: %q %v (after %v)", out, err, time.Since(start))
	}
	if time.Since(start) > time.Second {
		t.Fatalf("test too slow to prove the grace: %v", time.Since(start))
	}
	testkit.Returns(t, done, 6*time.Second, "Shutdown")
	if el := time.Since(start); el < time.Second {
		t.Fatalf("Shutdown returned after %v, before drain_grace (1s)", el)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after shutdown")
	}
}

// TestGRPCUpstreamRecoversWithinBackoffMax: after a 10s outage of a gRPC
// upstream, requests succeed again within reconnect_backoff_max (+jitter)
// + 1s of the backend coming back. With grpc-go's default backoff (to 120s)
// the next reconnect attempt after such an outage is ~6s away.
func TestGRPCUpstreamRecoversWithinBackoffMax(t *testing.T) {
	if testing.Short() {
		t.Skip("10s outage")
	}
	gAddr := testkit.FreeAddr(t)
	stop := serveDemoOn(t, gAddr)
	ls, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	rt := start(t, mustParse(t, bothWaysConfig(gAddr, ls.Addr().String(), ", reconnect_backoff_max: 1s")))
	cl := dial(t, rt, "mgp-in", 1)
	if r, err := call(cl, 1, "a"); err != nil || r.Result != 0 {
		t.Fatalf("before outage: %+v %v", r, err)
	}
	stop()
	outage := time.Now()
	waitFor(t, func() bool { r, err := call(cl, 1, "x"); return err == nil && r.Result != 0 })
	for time.Since(outage) < 10*time.Second {
		_, _ = call(cl, 1, "x")
		time.Sleep(100 * time.Millisecond)
	}
	serveDemoOn(t, gAddr)
	back := time.Now()
	testkit.Succeeds(t, testkit.Context(t, 10*time.Second), 20*time.Millisecond, func() error {
		if r, err := call(cl, 1, "b"); err != nil || r.Result != 0 {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	}, "not recovered 10s after the backend came back")
	rec := time.Since(back)
	t.Logf("recovered %v after the backend came back (10s outage, reconnect_backoff_max 1s)", rec)
	if rec > 1200*time.Millisecond+time.Second {
		t.Fatalf("recovery took %v, want <= max backoff (1s +20%% jitter) + 1s", rec)
	}
}

// TestReadyzAnswersDuringWarmingReload: while a reload holds the runtime
// lock warming up a new upstream that does not connect (up to WarmUp),
// /readyz still answers at once (it used to wait for the lock, failing
// probes with a 1s timeout).
func TestReadyzAnswersDuringWarmingReload(t *testing.T) {
	ep := backend(t, "A")
	rt := startWith(t, mustParse(t, yamlConfig(ep, "")), Options{WarmUp: 2 * time.Second})
	waitFor(t, func() bool { return rt.Admin().Ready() == nil })
	dead := testkit.FreeAddr(t)
	next := mustParse(t, yamlConfig(ep, "")+fmt.Sprintf("  - {name: cold, protocol: private, endpoints: [%q]}\n", dead))
	done := make(chan error, 1)
	go func() { done <- rt.Reload(next) }()
	waitFor(t, func() bool {
		if rt.mu.TryLock() {
			rt.mu.Unlock()
			return false
		}
		return true
	})
	start := time.Now()
	err := rt.Admin().Ready()
	took := time.Since(start)
	select {
	case <-done:
		t.Fatal("reload finished before the readiness check could overlap it")
	default:
	}
	if took > 200*time.Millisecond {
		t.Fatalf("/readyz took %v during a warming reload", took)
	}
	if err != nil {
		t.Fatalf("ready during reload: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := rt.Admin().Ready(); err == nil || !strings.Contains(err.Error(), "cold") {
		t.Fatalf("after the reload, with upstream cold down: %v", err)
	}
}
