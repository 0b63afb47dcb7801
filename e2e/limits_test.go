package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestConnectionLimitsKeepAdminAnswering runs the real binary with a low
// RLIMIT_NOFILE (300) and floods its private listeners: past
// limits.max_connections connections are closed at once; near the fd limit
// private connections are refused (fd_reserve) while /healthz and the gRPC
// listener keep answering. Without the limits the flood takes every fd and
// the admin endpoint stops accepting.
func TestConnectionLimitsKeepAdminAnswering(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prlimit (util-linux) not installed: required under CI")
		}
		t.Skip("prlimit (util-linux) not installed; skipped outside CI only (CI=true fails above)")
	}
	cfg := `defaults:
  limits: {fd_reserve: 64}
listeners:
  - name: capped
    kind: private
    address: 127.0.0.1:0
    limits: {max_connections: 20}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: g}]
  - name: open
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: g}]
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    limits: {max_connections: 5}
    routes: [{method: /legacy.L/*, cmd: 1, upstream: p}]
upstreams:
  - {name: g, protocol: grpc, endpoints: ["127.0.0.1:1"]}
  - {name: p, protocol: private, endpoints: ["127.0.0.1:1"]}
`
	mg := harness.StartMeshgate(t, cfg, harness.Wrap(prlimit, "--nofile=300:300"))
	harness.WaitHTTP200(t, 20*time.Second, mg.AdminURL("/healthz"))
	admin, capped, open, grpcAddr := mg.Admin(), mg.Addr("capped"), mg.Addr("open"), mg.Addr("grpc-in")

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	dial := func(addr string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		conns = append(conns, c)
		return c
	}
	// Past max_connections: closed by the server at once.
	for range 20 {
		dial(capped)
	}
	for i := range 5 {
		c := dial(capped)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection %d past max_connections: read %v, want EOF", 21+i, err)
		}
	}
	// The gRPC listener's cap: 5 silent connections take every slot, a 6th
	// is closed at once; once they go, gRPC clients are served again.
	var silent []net.Conn
	for range 5 {
		silent = append(silent, dial(grpcAddr))
	}
	harness.Eventually(t, 5*time.Second, "grpc-in refusal", func() error {
		c := dial(grpcAddr)
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("6th connection: read %v, want EOF", err)
		}
		return nil
	})
	if n, err := mg.Metric("meshgate_connections_rejected_total", harness.Labels{"listener": "grpc-in", "reason": "max_connections"}); err != nil || n < 1 {
		t.Fatalf("grpc-in max_connections refusals %v (%v), want >= 1", n, err)
	}
	for _, c := range silent {
		c.Close()
	}
	// Flood the other listener well past the fd limit.
	for range 400 {
		dial(open)
	}
	harness.Eventually(t, 10*time.Second, "fd_reserve refusals", func() error {
		n, err := mg.Metric("meshgate_connections_rejected_total", harness.Labels{"listener": "open", "reason": "fd_reserve"})
		if err != nil || n < 100 {
			return fmt.Errorf("%v refused, err %v", n, err)
		}
		return nil
	})
	n, err := mg.Metric("meshgate_connections_rejected_total", harness.Labels{"listener": "capped", "reason": "max_connections"})
	if err != nil || n != 5 {
		t.Fatalf("max_connections refusals %v (%v), want 5", n, err)
	}
	// Admin and the gRPC listener still answer.
	if code, body, err := harness.HTTPGet("http://" + admin + "/healthz"); err != nil || code != 200 {
		t.Fatalf("/healthz under fd pressure: %d %q %v", code, body, err)
	}
	cc := testkit.Dial(t, grpcAddr)
	harness.Eventually(t, 10*time.Second, "gRPC health under fd pressure", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err
	})
}
