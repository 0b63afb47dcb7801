package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// demoRunConfig serves the demo gRPC service and writes (to a fresh
// directory) a config whose private listener on a free port routes cmd 1
// to its method; it returns the file, the listener's address and the demo
// server (stopped at cleanup; a test checking for leaks stops it first).
func demoRunConfig(t *testing.T, method, drain string) (path, mgpAddr string, demoSrv *testkit.Stub) {
	t.Helper()
	demoSrv = &testkit.Stub{}
	demoSrv.Start(t)
	mgpAddr, adminAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	path = filepath.Join(t.TempDir(), "meshgate.yaml")
	cfg := fmt.Sprintf(`
admin: {address: %q}
defaults: {drain_timeout: %s}
listeners:
  - name: mgp-in
    kind: private
    address: %q
    routes: [{cmd: 1, method: %s, upstream: demo}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, adminAddr, drain, mgpAddr, method, demoSrv.Addr)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, mgpAddr, demoSrv
}

// dialRun connects to the listener of a starting `meshgate run` (retried
// for up to 5s).
func dialRun(t *testing.T, addr string, conns int) *legacy.Client {
	t.Helper()
	var cl *legacy.Client
	testkit.Succeeds(t, testkit.Context(t, 5*time.Second), 20*time.Millisecond, func() error {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		defer dcancel()
		var err error
		cl, err = legacy.Dial(dctx, addr, legacy.ClientOptions{Conns: conns})
		return err
	}, "run never listened")
	return cl
}

// TestRunAndValidate: `meshgate run -c FILE` serves, reloads on file
// change, and drains when its context ends (SIGTERM in main);
// `meshgate validate` accepts it and rejects a broken file.
func TestRunAndValidate(t *testing.T) {
	path, mgpAddr, demoSrv := demoRunConfig(t, "/demo.Echo/Upper", "3s")
	dir := filepath.Dir(path)
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
	defer cancel()
	cl := dialRun(t, mgpAddr, 0)
	cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer ccancel()
	r, err := cl.Call(cctx, 1, 0, []byte("run"), nil)
	if err != nil || string(r.Body) != "RUN" {
		t.Fatalf("call: %+v %v", r, err)
	}
	_ = cl.Close()
	cancel()
	testkit.Returns(t, done, 6*time.Second, "run")
	demoSrv.Server.Stop()
	goleak.VerifyNone(t)
}

// TestRunSIGTERMDrainUnderLoad: a real SIGTERM (through the same
// signal.NotifyContext main uses) drains `meshgate run` while clients keep
// calling: every request sent gets its reply.
func TestRunSIGTERMDrainUnderLoad(t *testing.T) {
	path, mgpAddr, demoSrv := demoRunConfig(t, "/demo.Echo/Echo", "5s")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runCmd(ctx, []string{"-c", path, "-log-level", "warn"}) }()
	cl := dialRun(t, mgpAddr, 4)
	quit := make(chan struct{})
	wait := testkit.Load(8, quit, func() error {
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer ccancel()
		r, err := cl.Call(cctx, 1, 0, []byte("x"), nil)
		if err == nil && r.Result != 0 {
			err = fmt.Errorf("result %d", r.Result)
		}
		return err
	})
	time.Sleep(150 * time.Millisecond)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // still serving while draining
	close(quit)
	okN, failN, errs := wait()
	testkit.Returns(t, done, 8*time.Second, "run")
	_ = cl.Close()
	demoSrv.Server.Stop()
	if failN != 0 || okN == 0 {
		t.Fatalf("ok=%d failed=%d %v", okN, failN, errs)
	}
	t.Logf("%d requests, 0 failed, across SIGTERM drain", okN)
	goleak.VerifyNone(t)
}
