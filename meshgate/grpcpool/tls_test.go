package grpcpool

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// tlsBackend serves test.Svc/Who on addr with srv's TLS; stop stops it.
func tlsBackend(t *testing.T, addr, name string, srv *tlsconf.Server, accepts *atomic.Int64) (bound string, stop func()) {
	t.Helper()
	st := &testkit.Stub{Listener: countingListener{testkit.Listen(t, addr), accepts}, Options: []grpc.ServerOption{grpc.Creds(srv.Credentials())},
		Services: map[string]map[string]demo.Handler{"test.Svc": testkit.WhoMethods(name)}}
	return st.Start(t), st.Server.Stop
}

// TestTLSRotation: a gRPC upstream over mTLS; the CA and both sides'
// certificates are replaced by a new CA's. Calls keep flowing on the
// established HTTP/2 connection (no new connection is accepted), and after
// a backend restart the pool reconnects with the new material (the new
// backend trusts only the new CA).
func TestTLSRotation(t *testing.T) {
	const refresh = 20 * time.Millisecond
	dir, _, files := testkit.PKI(t, "server", "client")
	sf, cf := files["server"], files["client"]
	srvTLS := testkit.TLSServer(t, sf, refresh)
	var accepts1, accepts2 atomic.Int64
	ep, stop1 := tlsBackend(t, "127.0.0.1:0", "one", srvTLS, &accepts1)

	u := config.Upstream{Name: "u", Protocol: "grpc", Endpoints: []string{ep}, LB: config.LBRoundRobin, Connections: 1,
		TLS: testkit.Config(cf, "localhost")}
	p, err := New(u, Options{TLSRefresh: refresh, DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.2, MaxDelay: 50 * time.Millisecond}, MinConnectTimeout: time.Second})}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if who(t, p, 0) != "one" {
		t.Fatal("call over mTLS")
	}

	newSrv := testkit.Rotate(t, dir, "ca-two", "server", "client")["server"]
	ctx := testkit.Context(t, 10*time.Second)
	testkit.WaitServes(t, ctx, cf, ep, newSrv.Cert.SerialNumber, refresh)
	seen := accepts1.Load()
	for range 20 {
		if who(t, p, 0) != "one" {
			t.Fatal("call after rotation")
		}
	}
	if got := accepts1.Load(); got != seen {
		t.Fatalf("the pool opened %d new connections during rotation", got-seen)
	}

	stop1()
	tlsBackend(t, ep, "two", srvTLS, &accepts2)
	for {
		var out []byte
		cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := p.Invoke(cctx, "/test.Svc/Who", []byte{}, &out, grpc.WaitForReady(true))
		ccancel()
		if err == nil && string(out) == "two" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pool did not reconnect with the rotated material: %v", err)
		}
	}
}
