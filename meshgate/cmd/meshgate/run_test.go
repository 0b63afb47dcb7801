package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunAndValidate: `meshgate run -c FILE` serves, reloads on file
// change, and drains when its context ends (SIGTERM in main);
// `meshgate validate` accepts it and rejects a broken file.
func TestRunAndValidate(t *testing.T) {
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := demo.NewServer()
	go func() { _ = gs.Serve(gln) }()
	defer gs.Stop()
	mgpAddr, adminAddr := freePort(t), freePort(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "meshgate.yaml")
	cfg := fmt.Sprintf(`
admin: {address: %q}
defaults: {drain_timeout: 3s}
listeners:
  - name: mgp-in
    kind: private
    address: %q
    routes: [{cmd: 1, method: /demo.Echo/Upper, upstream: demo}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, adminAddr, mgpAddr, gln.Addr().String())
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := validateCmd(context.Background(), []string{"-c", path}); err != nil {
		t.Fatalf("validate: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("listeners: [{name: x, kind: nope, address: 1}]"), 0o600)
	if err := validateCmd(context.Background(), []string{"-c", bad}); err != errInvalidConfig {
		t.Fatalf("validate bad: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runCmd(ctx, []string{"-c", path, "-log-level", "warn"}) }()
	var cl *legacy.Client
	deadline := time.Now().Add(5 * time.Second)
	for {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		cl, err = legacy.Dial(dctx, mgpAddr, legacy.ClientOptions{})
		dcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("run never listened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer ccancel()
	r, err := cl.Call(cctx, 1, 0, []byte("run"), nil)
	if err != nil || string(r.Body) != "RUN" {
		t.Fatalf("call: %+v %v", r, err)
	}
	_ = cl.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("run did not drain and return")
	}
	gs.Stop()
	goleak.VerifyNone(t)
}

// TestRunSIGTERMDrainUnderLoad: a real SIGTERM (through the same
// signal.NotifyContext main uses) drains `meshgate run` while clients keep
// calling: every request sent gets its reply.
func TestRunSIGTERMDrainUnderLoad(t *testing.T) {
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := demo.NewServer()
	go func() { _ = gs.Serve(gln) }()
	mgpAddr, adminAddr := freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "meshgate.yaml")
	cfg := fmt.Sprintf(`
admin: {address: %q}
defaults: {drain_timeout: 5s}
listeners:
  - name: mgp-in
    kind: private
    address: %q
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, adminAddr, mgpAddr, gln.Addr().String())
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runCmd(ctx, []string{"-c", path, "-log-level", "warn"}) }()
	var cl *legacy.Client
	for deadline := time.Now().Add(5 * time.Second); ; {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		cl, err = legacy.Dial(dctx, mgpAddr, legacy.ClientOptions{Conns: 4})
		dcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run never listened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var okN, failN atomic.Int64
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
				r, err := cl.Call(cctx, 1, 0, []byte("x"), nil)
				ccancel()
				if err != nil || r.Result != 0 {
					failN.Add(1)
					return
				}
				okN.Add(1)
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // still serving while draining
	close(quit)
	wg.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
	_ = cl.Close()
	gs.Stop()
	if failN.Load() != 0 || okN.Load() == 0 {
		t.Fatalf("ok=%d failed=%d", okN.Load(), failN.Load())
	}
	t.Logf("%d requests, 0 failed, across SIGTERM drain", okN.Load())
	goleak.VerifyNone(t)
}
