package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// TestTLSEveryHopBinary runs the meshgate binary with mTLS on every hop it
// owns — private listener, grpc listener, gRPC upstream, private upstream
// (which `meshgate run` used to refuse with exit 1) — with the health
// listener and loopback admin, then rotates the CA and every certificate:
// calls keep flowing on established connections and new connections use
// the new CA.
func TestTLSEveryHopBinary(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testpki.WriteSet(dir, "meshgate", "client", "backend")
	if err != nil {
		t.Fatal(err)
	}
	b := files["backend"]
	backTLS, err := tlsconf.NewServer(&config.TLS{CertFile: b.CertFile, KeyFile: b.KeyFile, CAFile: b.CAFile}, tlsconf.Options{Refresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(backTLS.Close)
	// Private backend: the reference legacy server behind mTLS.
	lln := harness.Listen(t)
	back := legacy.NewServer(legacy.ServerOptions{})
	go func() { _ = back.Serve(tls.NewListener(lln, backTLS.Config())) }()
	t.Cleanup(func() { back.Close() })
	// gRPC backend: demo.Echo behind mTLS.
	gaddr := harness.ServeGRPC(t, demo.NewServer(grpc.Creds(backTLS.Credentials())))

	// Relative file names: resolved against the config file's directory.
	mtls := "{cert_file: meshgate.pem, key_file: meshgate-key.pem, ca_file: ca.pem}"
	y := fmt.Sprintf(`
admin: {address: 127.0.0.1:0, health_address: 127.0.0.1:0}
tls: {refresh_interval: 50ms}
listeners:
  - {name: mgp-in, kind: private, address: 127.0.0.1:0, tls: %s,
     routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]}
  - {name: grpc-in, kind: grpc, address: 127.0.0.1:0, tls: %s,
     routes: [{method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}]}
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q], connections: 1,
     tls: {cert_file: meshgate.pem, key_file: meshgate-key.pem, ca_file: ca.pem, server_name: localhost}}
  - {name: legacy, protocol: private, endpoints: [%q], connections: 1, tls: %s}
`, mtls, mtls, gaddr, lln.Addr().String(), mtls)
	mg := harness.StartMeshgate(t, y, harness.InDir(dir))
	admin, health, mgpIn, grpcIn := mg.Admin(), mg.Health(), mg.Addr("mgp-in"), mg.Addr("grpc-in")
	harness.WaitHTTP200(t, 20*time.Second, "http://"+health+"/readyz")

	// Admin exposure: pprof off by default; the health listener has no
	// /config.
	if code, _, err := harness.HTTPGet("http://" + admin + "/debug/pprof/"); err != nil || code != 404 {
		t.Fatalf("admin pprof: %d %v, want 404", code, err)
	}
	if code, _, err := harness.HTTPGet("http://" + health + "/config"); err != nil || code != 404 {
		t.Fatalf("health /config: %d %v, want 404", code, err)
	}

	c := files["client"]
	clientTLS, err := tlsconf.NewClient(&config.TLS{CertFile: c.CertFile, KeyFile: c.KeyFile, CAFile: c.CAFile, ServerName: "localhost"},
		tlsconf.Options{Refresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clientTLS.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dialMGP := func() (*privconn.Conn, error) {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		defer dcancel()
		return privconn.Dial(dctx, mgpIn, mgp.New(0), privconn.Options{Heartbeat: -1,
			TLS: func(ctx context.Context) (*tls.Config, error) { return clientTLS.Config(ctx, mgpIn) }})
	}
	mgpEcho := func(cn *privconn.Conn, body string) error {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		r, err := cn.Do(cctx, &codec.Frame{Cmd: 1, Body: []byte(body)})
		if err != nil {
			return err
		}
		if r.Result != 0 || string(r.Body) != body {
			return fmt.Errorf("reply result %d body %q", r.Result, r.Body)
		}
		return nil
	}
	cc := harness.DialGRPC(t, grpcIn, grpc.WithTransportCredentials(clientTLS.Credentials()), harness.RawCodec())
	grpcEcho := func(body string) error {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		var out []byte
		if err := cc.Invoke(cctx, "/legacy.Legacy/Echo", []byte(body), &out); err != nil {
			return err
		}
		if string(out) != body {
			return fmt.Errorf("echo %q", out)
		}
		return nil
	}

	var est *privconn.Conn
	harness.Eventually(t, 10*time.Second, "private listener (mTLS) -> gRPC upstream (mTLS)", func() error {
		cn, err := dialMGP()
		if err != nil {
			return err
		}
		if err := mgpEcho(cn, "hello"); err != nil {
			_ = cn.Close()
			return err
		}
		est = cn
		return nil
	})
	t.Cleanup(func() { _ = est.Close() })
	harness.Eventually(t, 10*time.Second, "grpc listener (mTLS) -> private upstream (mTLS)", func() error { return grpcEcho("hi") })

	// Rotate the CA and every certificate (MeshGate's, the client's, the
	// backends').
	ca2, err := testpki.NewCA("ca-two")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca2.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"meshgate", "client", "backend"} {
		if _, _, err := ca2.Issue(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	// New connections: only the new CA works now, so a successful new
	// private connection proves MeshGate serves and verifies with it.
	harness.Eventually(t, 10*time.Second, "new private connection with CA two", func() error {
		cn, err := dialMGP()
		if err != nil {
			return err
		}
		defer cn.Close()
		return mgpEcho(cn, "fresh")
	})
	// Established connections (downstream private, downstream gRPC, and the
	// upstream connections behind them) keep working.
	if err := mgpEcho(est, "established"); err != nil {
		t.Fatalf("established private connection after rotation: %v", err)
	}
	if err := grpcEcho("established"); err != nil {
		t.Fatalf("established gRPC connection after rotation: %v", err)
	}
}
