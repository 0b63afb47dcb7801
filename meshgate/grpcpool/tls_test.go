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
	"github.com/meshgate/meshgate/internal/testpki"
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
	var ln net.Listener
	var err error
	for range 50 { // a just-closed port may need a moment to rebind
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	gs := demo.NewServer(grpc.Creds(srv.Credentials()))
	demo.RegisterRaw(gs, "test.Svc", map[string]demo.Handler{
		"Who": func(context.Context, []byte) ([]byte, error) { return []byte(name), nil },
	})
	go func() { _ = gs.Serve(countingListener{ln, accepts}) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String(), gs.Stop
}

// TestTLSRotation: a gRPC upstream over mTLS; the CA and both sides'
// certificates are replaced by a new CA's. Calls keep flowing on the
// established HTTP/2 connection (no new connection is accepted), and after
// a backend restart the pool reconnects with the new material (the new
// backend trusts only the new CA).
func TestTLSRotation(t *testing.T) {
	const refresh = 20 * time.Millisecond
	dir := t.TempDir()
	_, files, err := testpki.WriteSet(dir, "server", "client")
	if err != nil {
		t.Fatal(err)
	}
	sf, cf := files["server"], files["client"]
	srvTLS, err := tlsconf.NewServer(&config.TLS{CertFile: sf.CertFile, KeyFile: sf.KeyFile, CAFile: sf.CAFile}, tlsconf.Options{Refresh: refresh})
	if err != nil {
		t.Fatal(err)
	}
	defer srvTLS.Close()
	var accepts1, accepts2 atomic.Int64
	ep, stop1 := tlsBackend(t, "127.0.0.1:0", "one", srvTLS, &accepts1)

	u := config.Upstream{Name: "u", Protocol: "grpc", Endpoints: []string{ep}, LB: config.LBRoundRobin, Connections: 1,
		TLS: &config.TLS{CertFile: cf.CertFile, KeyFile: cf.KeyFile, CAFile: cf.CAFile, ServerName: "localhost"}}
	p, err := New(u, Options{TLSRefresh: refresh, DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.2, MaxDelay: 50 * time.Millisecond}, MinConnectTimeout: time.Second})}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if who(t, p, 0) != "one" {
		t.Fatal("call over mTLS")
	}

	ca2, err := testpki.NewCA("ca-two")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca2.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	newSrv, _, _, err := ca2.IssueFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca2.Issue(dir, "client"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Wait until the backend serves the new certificate to new handshakes.
	probe, err := tlsconf.NewClient(&config.TLS{CertFile: cf.CertFile, KeyFile: cf.KeyFile, CAFile: cf.CAFile, ServerName: "localhost"}, tlsconf.Options{Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for {
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", ep)
		if err != nil {
			t.Fatal(err)
		}
		c, err := probe.Handshake(ctx, raw, ep)
		if err == nil {
			got := c.ConnectionState().PeerCertificates[0].SerialNumber
			_ = c.Close()
			if got.Cmp(newSrv.Cert.SerialNumber) == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("backend never served the rotated certificate")
		case <-time.After(refresh):
		}
	}
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
