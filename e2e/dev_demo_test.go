package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestDevDemo runs the real tools binary `meshgate-dev demo` with the real
// product binary as its child (`meshgate run -c`), on free ports: traffic
// flows both ways through the child to the peers the demo runs in-process,
// SIGHUP is forwarded (the child reloads), and SIGTERM is forwarded (the
// child drains and exits, then the demo stops its peers and exits 0).
func TestDevDemo(t *testing.T) {
	dev, bin := harness.MeshgateDevBin(t), harness.MeshgateBin(t)
	legacyAddr, grpcAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	mgpIn, grpcIn, admin := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	cfg := fmt.Sprintf(`admin: {address: %q}
defaults: {timeout: 3s, drain_timeout: 3s}
listeners:
  - name: mgp-in
    kind: private
    address: %q
    routes: [{cmd: 2, method: /demo.Echo/Upper, upstream: demo-grpc}]
  - name: grpc-in
    kind: grpc
    address: %q
    routes: [{method: /legacy.Legacy/Uppercase, cmd: 2, upstream: legacy}]
upstreams:
  - {name: demo-grpc, protocol: grpc, endpoints: [%q]}
  - {name: legacy, protocol: private, endpoints: [%q]}
`, admin, mgpIn, grpcIn, grpcAddr, legacyAddr)
	path := harness.WriteFile(t, t.TempDir(), "demo.yaml", []byte(cfg))
	p := harness.Start(t, "meshgate-dev demo", dev, "demo", "-c", path, "-meshgate", bin, "-traffic", "200ms")
	harness.WaitHTTP200(t, 20*time.Second, "http://"+admin+"/readyz")

	// The demo's own periodic traffic flows both ways.
	p.WaitOutput(t, 10*time.Second, `msg="demo MGP→gRPC" component=demo cmd=2 sent="hello #1" got="HELLO #1"`,
		`msg="demo gRPC→MGP" component=demo method=/legacy.Legacy/Uppercase sent="hello #1" got="HELLO #1"`)
	// And so does ours: MGP/1 → meshgate → in-process demo gRPC service,
	// gRPC → meshgate → in-process legacy server.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := legacy.Dial(ctx, mgpIn, legacy.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.Call(ctx, 2, 7, []byte("via mgp"), nil)
	_ = cl.Close()
	if err != nil || r.Result != 0 || string(r.Body) != "VIA MGP" {
		t.Fatalf("MGP/1 call through the demo: %+v %v", r, err)
	}
	cc := testkit.Client(t, grpcIn)
	var out []byte
	err = cc.Invoke(ctx, "/legacy.Legacy/Uppercase", []byte("via grpc"), &out)
	_ = cc.Close()
	if err != nil || string(out) != "VIA GRPC" {
		t.Fatalf("gRPC call through the demo: %q %v", out, err)
	}

	m := regexp.MustCompile(`msg="meshgate started" component=demo pid=(\d+) binary=(\S+)`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatal("no 'meshgate started' line")
	}
	child, _ := strconv.Atoi(m[1])
	if m[2] != bin {
		t.Errorf("demo ran %s, want the product binary %s", m[2], bin)
	}

	// SIGHUP reaches the child, which reloads; the demo keeps running.
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.WaitOutput(t, 10*time.Second, `msg="SIGHUP: reloading"`)
	select {
	case <-p.Done():
		t.Fatal("meshgate-dev exited on SIGHUP")
	default:
	}

	// SIGTERM: the child drains and exits, then the demo exits 0 and its
	// peers are gone.
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Exited(t, 20*time.Second); code != 0 {
		t.Fatalf("meshgate-dev demo exit code %d", code)
	}
	for _, want := range []string{"signal received: draining", "meshgate exited; stopping the bundled peers"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if err := syscall.Kill(child, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("child meshgate pid %d still exists after the demo exited (kill 0: %v)", child, err)
	}
	for _, a := range []string{legacyAddr, grpcAddr, mgpIn} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the demo exited", a)
		}
	}
}

// TestDevDemoNeedsProduct: without the product binary the demo fails at
// once with an error saying how to provide it.
func TestDevDemoNeedsProduct(t *testing.T) {
	dev := harness.MeshgateDevBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, dev, "demo", "-meshgate", "/nonexistent/meshgate").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "-meshgate") || !strings.Contains(string(out), "/nonexistent/meshgate") {
		t.Fatalf("error does not name the flag and path:\n%s", out)
	}
}
