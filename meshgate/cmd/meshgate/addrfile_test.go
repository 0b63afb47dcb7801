package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/addrfile"
	"github.com/meshgate/meshgate/meshgate/runtime"
)

// TestRunAddressFile: `meshgate run -address-file F` on a config whose
// listeners, admin and health use port 0 writes every bound address to F
// once it serves (the listener answers at the address written), and
// rewrites F with the next generation after a reload that adds a listener.
func TestRunAddressFile(t *testing.T) {
	demoAddr := testkit.Demo(t)
	dir := t.TempDir()
	path, addrFile := filepath.Join(dir, "meshgate.yaml"), filepath.Join(dir, "addrs.json")
	cfg := fmt.Sprintf(`
admin: {address: "127.0.0.1:0", health_address: "127.0.0.1:0"}
defaults: {drain_timeout: 3s}
listeners:
  - name: mgp-in
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 1, method: /demo.Echo/Upper, upstream: demo}]
%%s
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, demoAddr)
	write := func(extra string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(fmt.Sprintf(cfg, extra)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runCmd(ctx, []string{"-c", path, "-log-level", "warn", "-address-file", addrFile})
	}()
	read := func(gen uint64) runtime.BoundAddrs {
		t.Helper()
		var b runtime.BoundAddrs
		testkit.Succeeds(t, testkit.Context(t, 5*time.Second), 20*time.Millisecond, func() (err error) {
			if b, err = addrfile.Read(addrFile); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err) // never partial: written by rename
				}
				return err
			}
			if b.Generation < gen {
				return fmt.Errorf("generation %d: %+v", b.Generation, b)
			}
			return nil
		}, fmt.Sprintf("no address file of generation %d", gen))
		return b
	}
	b := read(1)
	for name, a := range map[string]string{"mgp-in": b.Listeners["mgp-in"], "admin": b.Admin, "health": b.Health} {
		if a == "" || strings.HasSuffix(a, ":0") {
			t.Fatalf("%s: %q in %+v", name, a, b)
		}
	}
	call := func(addr string) {
		t.Helper()
		cl := testkit.LegacyClient(t, addr, legacy.ClientOptions{})
		if r, err := cl.Call(testkit.Context(t, 3*time.Second), 1, 0, []byte("run"), nil); err != nil || string(r.Body) != "RUN" {
			t.Fatalf("call %s: %+v %v", addr, r, err)
		}
	}
	call(b.Listeners["mgp-in"]) // serving when the file appears

	write(`
  - name: extra
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 1, method: /demo.Echo/Upper, upstream: demo}]`)
	b2 := read(2)
	if b2.Listeners["mgp-in"] != b.Listeners["mgp-in"] || b2.Admin != b.Admin || b2.Health != b.Health {
		t.Fatalf("reload moved a socket: %+v -> %+v", b, b2)
	}
	if e := b2.Listeners["extra"]; e == "" || e == b.Listeners["mgp-in"] || strings.HasSuffix(e, ":0") {
		t.Fatalf("extra: %+v", b2)
	}
	call(b2.Listeners["extra"])
	if m, _ := filepath.Glob(filepath.Join(dir, ".addrs.json.*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
	cancel()
	testkit.Returns(t, done, 6*time.Second, "run")
}

// TestRunAddressFileBadDir: an -address-file in a directory that does not
// exist is refused before anything listens, naming the flag.
func TestRunAddressFileBadDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshgate.yaml")
	if err := os.WriteFile(path, []byte("listeners: []\nupstreams: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runCmd(context.Background(), []string{"-c", path, "-address-file", "/nonexistent/dir/addrs.json"})
	if err == nil || !strings.Contains(err.Error(), "-address-file") {
		t.Fatalf("run: %v, want an error naming -address-file", err)
	}
}
