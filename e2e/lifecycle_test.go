package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestSIGHUPDuringDrain: SIGHUP while `meshgate run -c` drains is logged
// and ignored; the process does not die (it used to exit 129, dropping the
// requests in flight) and every in-flight request completes.
func TestSIGHUPDuringDrain(t *testing.T) {
	be := testkit.Demo(t)
	mg := harness.StartMeshgate(t, fmt.Sprintf(`
defaults: {drain_timeout: 10s}
listeners:
  - {name: mgp-in, kind: private, address: 127.0.0.1:0, routes: [{cmd: 4, method: /demo.Echo/Sleep, upstream: demo}]}
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, be), harness.WaitReady(10*time.Second))
	p, mgp := mg.Proc, mg.Addr("mgp-in")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := testkit.LegacyClient(t, mgp, legacy.ClientOptions{Conns: 2})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			r, err := cl.Call(ctx, 4, uint64(i), []byte("1500ms"), nil)
			if err == nil && (r.Result != 0 || string(r.Body) != "1500ms") {
				err = fmt.Errorf("result %d body %q", r.Result, r.Body)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	harness.Eventually(t, 5*time.Second, "requests in flight", func() error {
		body, err := mg.Metrics()
		if err != nil {
			return err
		}
		if !strings.Contains(body, fmt.Sprintf(`meshgate_requests_in_flight{listener="mgp-in"} %d`, n)) {
			return fmt.Errorf("not all %d in flight", n)
		}
		return nil
	})
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	p.WaitOutput(t, 5*time.Second, "draining")
	for range 3 {
		_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	}
	p.WaitOutput(t, 5*time.Second, "SIGHUP ignored: draining")
	inFlightDoneExit0(t, p, &wg, errs)
}

// TestSIGHUPDuringStartup: a SIGHUP that arrives while `meshgate run -c`
// is still starting (warming up a private upstream that is down) is queued
// and applied as a reload once started; the process keeps running.
func TestSIGHUPDuringStartup(t *testing.T) {
	be := testkit.Demo(t)
	mg := harness.StartMeshgate(t, fmt.Sprintf(`
listeners:
  - {name: mgp-in, kind: private, address: 127.0.0.1:0, routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]}
  - {name: grpc-in, kind: grpc, address: 127.0.0.1:0, routes: [{method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}]}
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
  - {name: legacy, protocol: private, endpoints: [%q]}
`, be, harness.RefusedAddr), harness.NoWait())
	p := mg.Proc
	p.WaitOutput(t, 10*time.Second, "msg=starting")
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	p.WaitOutput(t, 5*time.Second, "reload queued")
	p.WaitOutput(t, 10*time.Second, "reload requested")
	mg.WaitStarted()
	harness.WaitHTTP200(t, 10*time.Second, mg.AdminURL("/healthz"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := testkit.LegacyClient(t, mg.Addr("mgp-in"), legacy.ClientOptions{})
	if r, err := cl.Call(ctx, 1, 1, []byte("up"), nil); err != nil || string(r.Body) != "up" {
		t.Fatalf("after start-up SIGHUP: %+v %v", r, err)
	}
	select {
	case <-p.Done():
		t.Fatalf("meshgate exited: %v", p.Cmd.ProcessState)
	default:
	}
}

// TestSIGTERMGRPCDrainGrace: after SIGTERM, `meshgate run` keeps its gRPC
// listener accepting for defaults.drain_grace: a client that connects
// then is served (it used to get "connection refused"), the health service
// says NOT_SERVING; the process then exits 0.
func TestSIGTERMGRPCDrainGrace(t *testing.T) {
	_, ls := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	mg := harness.StartMeshgate(t, fmt.Sprintf(`
defaults: {drain_timeout: 6s, drain_grace: 2s}
listeners:
  - {name: grpc-in, kind: grpc, address: 127.0.0.1:0, routes: [{method: /legacy.Legacy/*, cmd: 1, upstream: legacy}]}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q]}
`, ls), harness.WaitReady(10*time.Second))
	p := mg.Proc
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	sent := time.Now()
	dial := func() *grpc.ClientConn { return testkit.Client(t, mg.Addr("grpc-in")) }
	// Draining has begun once the health service says NOT_SERVING...
	probe := dial()
	harness.Eventually(t, 3*time.Second, "health NOT_SERVING after SIGTERM", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hr, err := healthpb.NewHealthClient(probe).Check(ctx, &healthpb.HealthCheckRequest{Service: "legacy.Legacy"})
		if err != nil {
			return err
		}
		if hr.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			return fmt.Errorf("status %v", hr.Status)
		}
		return nil
	})
	// ...and a client connecting only now is still served.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var out []byte
	if err := dial().Invoke(ctx, "/legacy.Legacy/Echo", []byte("late"), &out); err != nil || string(out) != "late" {
		t.Fatalf("call from a client connecting %v after SIGTERM: %q %v", time.Since(sent), out, err)
	}
	if code := p.Exited(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if el := time.Since(sent); el < 2*time.Second {
		t.Fatalf("exited %v after SIGTERM, before drain_grace", el)
	}
}
