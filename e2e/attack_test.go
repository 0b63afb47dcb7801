package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// privateBridge is a config with one private listener routing cmd 1
// (echo) and cmd 4 (slow echo) to the private upstream at addr; extra is
// prepended (defaults).
func privateBridge(extra, addr string) string {
	return fmt.Sprintf(`%s
listeners:
  - {name: mgp-in, kind: private, address: 127.0.0.1:0, routes: [{cmd: 1, upstream: legacy}, {cmd: 4, upstream: legacy}]}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q]}
`, extra, addr)
}

// echoLoad runs 4 workers of echo calls through addr until stop.
func echoLoad(t *testing.T, addr string, stop chan struct{}) func() (int64, int64, []error) {
	cl := testkit.LegacyClient(t, addr, legacy.ClientOptions{Conns: 2})
	return testkit.Load(4, stop, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := cl.Call(ctx, legacy.CmdEcho, 7, []byte("load"), nil)
		if err == nil && (r.Result != 0 || string(r.Body) != "load") {
			err = fmt.Errorf("result %d body %q", r.Result, r.Body)
		}
		return err
	})
}

// TestAttackSIGHUPInvalidThenBurstUnderLoad: under load, a SIGHUP with an
// invalid config is rejected naming the field (log line, reloads_total
// rejected, last_reload_success 0) and the live config keeps serving;
// then a burst of SIGHUPs with a valid new config applies it; no call of
// the load fails throughout.
func TestAttackSIGHUPInvalidThenBurstUnderLoad(t *testing.T) {
	_, ls := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	mg := harness.StartMeshgate(t, privateBridge("", ls), harness.WaitReady(10*time.Second))
	stop := make(chan struct{})
	wait := echoLoad(t, mg.Addr("mgp-in"), stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wait()
		}
	}()

	mg.WriteConfig(strings.Replace(privateBridge("", ls), "{cmd: 4, upstream: legacy}", "{cmd: 4, upstream: nope}", 1))
	_ = mg.Cmd.Process.Signal(syscall.SIGHUP)
	mg.WaitOutput(t, 10*time.Second, "listeners[0].routes[1].upstream")
	harness.Eventually(t, 5*time.Second, "the rejected reload counted", func() error {
		n, err := mg.Metric("meshgate_config_reloads_total", harness.Labels{"outcome": "rejected"})
		if err == nil && n < 1 {
			err = fmt.Errorf("rejected reloads %v", n)
		}
		return err
	})
	if ok, err := mg.Metric("meshgate_config_last_reload_success", nil); err != nil || ok != 0 {
		t.Fatalf("last_reload_success %v %v, want 0", ok, err)
	}

	// A burst of SIGHUPs with a valid, changed config.
	gen, err := mg.Metric("meshgate_config_generation", nil)
	if err != nil {
		t.Fatal(err)
	}
	mg.WriteConfig(privateBridge("defaults: {timeout: 4s}", ls))
	for range 10 {
		_ = mg.Cmd.Process.Signal(syscall.SIGHUP)
	}
	harness.Eventually(t, 10*time.Second, "the new config applied", func() error {
		n, err := mg.Metric("meshgate_config_generation", nil)
		if err == nil && n <= gen {
			err = fmt.Errorf("generation %v", n)
		}
		return err
	})
	// SIGHUPs that arrive while a reload runs are coalesced (the signal
	// channel holds a few): the burst makes one or two reloads, not ten.
	if ok, err := mg.Metric("meshgate_config_last_reload_success", nil); err != nil || ok != 1 {
		t.Fatalf("last_reload_success %v %v after the valid config, want 1", ok, err)
	}
	close(stop)
	n := testkit.NoFailures(t, wait)
	t.Logf("%d calls, none failed", n)
	select {
	case <-mg.Done():
		t.Fatal("meshgate exited")
	default:
	}
}

// TestAttackSIGTERMDuringStartup: SIGTERM while `meshgate run` is still
// starting (warming up a private upstream that is down, before the
// listeners serve) ends the process, exit 0, once start-up finishes.
func TestAttackSIGTERMDuringStartup(t *testing.T) {
	mg := harness.StartMeshgate(t, privateBridge("", harness.RefusedAddr), harness.NoWait())
	p := mg.Proc
	p.WaitOutput(t, 10*time.Second, "msg=starting")
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	if code := p.Exited(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	p.WaitOutput(t, time.Second, "draining")
}

// TestAttackSIGTERMTwice: a second SIGTERM (and a SIGINT) while draining
// is logged and ignored: the requests in flight still get their answers
// and the process exits 0 once drained (within drain_timeout).
func TestAttackSIGTERMTwice(t *testing.T) {
	_, ls := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	mg := harness.StartMeshgate(t, privateBridge("defaults: {drain_timeout: 10s}", ls), harness.WaitReady(10*time.Second))
	p := mg.Proc
	cl := testkit.LegacyClient(t, mg.Addr("mgp-in"), legacy.ClientOptions{Conns: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 20
	slow := binary.BigEndian.AppendUint32(nil, 1500)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			r, err := cl.Call(ctx, legacy.CmdSlow, uint64(i), slow, nil)
			if err == nil && (r.Result != 0 || !bytes.Equal(r.Body, slow)) {
				err = fmt.Errorf("result %d", r.Result)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	harness.Eventually(t, 5*time.Second, "requests in flight", func() error {
		v, err := mg.Metric("meshgate_requests_in_flight", harness.Labels{"listener": "mgp-in"})
		if err == nil && v != n {
			err = fmt.Errorf("%v in flight", v)
		}
		return err
	})
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	p.WaitOutput(t, 5*time.Second, "draining")
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	_ = p.Cmd.Process.Signal(syscall.SIGINT)
	p.WaitOutput(t, 5*time.Second, "signal ignored: already draining")
	inFlightDoneExit0(t, p, &wg, errs)
}

// TestAttackSIGTERMStalledBackend: SIGTERM while a request waits on a
// private backend that never answers: the drain ends at drain_timeout
// (not at the request's longer timeout), the request is answered
// (result 7, upstream unavailable) or its connection closed, and the
// process exits 1 ("drain timed out") within drain_timeout plus a
// margin.
func TestAttackSIGTERMStalledBackend(t *testing.T) {
	ln := testkit.Listen(t, "127.0.0.1:0")
	testkit.ServeConns(t, ln, func(nc net.Conn) { _, _ = io.Copy(io.Discard, nc) }) // reads, never answers
	mg := harness.StartMeshgate(t, privateBridge("defaults: {drain_timeout: 2s, timeout: 60s}", ln.Addr().String()), harness.WaitReady(10*time.Second))
	p := mg.Proc
	cl := testkit.LegacyClient(t, mg.Addr("mgp-in"), legacy.ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type res struct {
		result uint16
		err    error
	}
	done := make(chan res, 1)
	go func() {
		r, err := cl.Call(ctx, legacy.CmdEcho, 1, []byte("stalled"), nil)
		if err != nil {
			done <- res{err: err}
			return
		}
		done <- res{result: r.Result}
	}()
	harness.Eventually(t, 5*time.Second, "the request in flight", func() error {
		v, err := mg.Metric("meshgate_requests_in_flight", harness.Labels{"listener": "mgp-in"})
		if err == nil && v != 1 {
			err = fmt.Errorf("%v in flight", v)
		}
		return err
	})
	sent := time.Now()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	code := p.Exited(t, 10*time.Second)
	el := time.Since(sent)
	r := testkit.Receive(t, done, 5*time.Second, "the stalled request's outcome")
	t.Logf("exit %d after %v; request: result %d err %v", code, el.Round(time.Millisecond), r.result, r.err)
	if el < 2*time.Second {
		t.Errorf("exited %v after SIGTERM, before drain_timeout, with a request in flight", el)
	}
	if code != 1 {
		t.Errorf("exit code %d, want 1 (drain timed out)", code)
	}
	if r.err != nil || r.result != 7 {
		t.Errorf("stalled request: result %d, err %v; want result 7 (server shutting down)", r.result, r.err)
	}
	p.WaitOutput(t, time.Second, "drain timed out")
}
