package envoyproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStartTCPProxy starts a real Envoy with a static tcp_proxy to an echo
// server, waits for LIVE, sends bytes through it and reads stats.
func TestStartTCPProxy(t *testing.T) {
	ln := testkit.Listen(t, "127.0.0.1:0")
	testkit.ServeConns(t, ln, func(c net.Conn) { defer c.Close(); io.Copy(c, c) })
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	port := pl.Addr().(*net.TCPAddr).Port
	pl.Close()
	up := ln.Addr().(*net.TCPAddr)
	boot := fmt.Sprintf(`
node: {id: test, cluster: test}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  listeners:
  - name: in
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: in
          cluster: echo
  clusters:
  - name: echo
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
`, port, up.Port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := StartT(t, ctx, Options{Bootstrap: []byte(boot)})
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("hello through envoy")
	c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo %q %v", got, err)
	}
	c.Close()
	dump, err := e.ConfigDump()
	if err != nil || !bytes.Contains(dump, []byte(`"echo"`)) {
		t.Fatalf("config_dump: %v", err)
	}
	testkit.Within(t, 5*time.Second, "cluster.echo.upstream_cx_total above 0", func() bool { return e.Stat("cluster.echo.upstream_cx_total") != 0 })
	st, err := e.Stats()
	if err != nil || st["server.live"] != 1 {
		t.Fatalf("server.live=%d err=%v", st["server.live"], err)
	}
	e.Stop()
	select {
	case <-e.Done():
	default:
		t.Fatal("not exited after Stop")
	}
	if e.Log() == "" {
		t.Fatal("empty log")
	}
}

func TestBadBootstrapFailsFast(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Start(ctx, Options{Bootstrap: []byte("static_resources: {listeners: [{name: x, bogus_field: 1}]}\nadmin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n")})
	if err == nil {
		t.Fatal("bad bootstrap accepted")
	}
}

func TestParseStats(t *testing.T) {
	m := ParseStats([]byte("a.b: 3\nserver.live: 1\nh: P0(nan,1)\n"))
	if m["a.b"] != 3 || m["server.live"] != 1 || len(m) != 2 {
		t.Fatal(m)
	}
}
