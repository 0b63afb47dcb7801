package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/meshgate/demo"
	"github.com/meshgate/meshgate/meshgate/legacy"
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
