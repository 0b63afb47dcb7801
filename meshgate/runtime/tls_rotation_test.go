package runtime

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// peerTLS is a static client tls.Config from files as they are now (a
// client that does not rotate).
func peerTLS(t *testing.T, certFile, keyFile, caFile string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost"}
}

// mgpConn is one MGP/1 connection over TLS.
type mgpConn struct {
	c   *tls.Conn
	r   *codec.Reader
	seq uint32
}

func dialMGP(ctx context.Context, addr string, cfg *tls.Config) (*mgpConn, error) {
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &mgpConn{c: c.(*tls.Conn), r: codec.NewReader(c, mgp.New(0), 256)}, nil
}

func (m *mgpConn) echo(body string) error {
	m.seq++
	_ = m.c.SetDeadline(time.Now().Add(3 * time.Second))
	b, _ := mgp.New(0).Append(nil, &codec.Frame{Cmd: 1, Seq: m.seq, Body: []byte(body)})
	if _, err := m.c.Write(b); err != nil {
		return err
	}
	var f codec.Frame
	if err := m.r.ReadFrame(&f); err != nil {
		return err
	}
	if f.Seq != m.seq || string(f.Body) != body {
		return fmt.Errorf("reply %+v", f)
	}
	return nil
}

// TestTLSRotationEveryHop: a private listener and a grpc listener both
// terminating mTLS, and a private upstream dialed with mTLS, all from one
// directory of files. The CA and every certificate and key are replaced
// by a new CA's: connections established before keep working; new
// connections are served the new certificate and verified against the new
// CA, and a client certificate from the old CA is refused. (Before, CA
// files were never re-read and private upstream TLS was refused.)
func TestTLSRotationEveryHop(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testpki.WriteSet(dir, "meshgate", "client", "backend")
	if err != nil {
		t.Fatal(err)
	}
	oldDir := t.TempDir() // a copy of CA one's client material
	for _, f := range []string{"ca.pem", "client.pem", "client-key.pem"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if err := os.WriteFile(filepath.Join(oldDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, c, b := files["meshgate"], files["client"], files["backend"]

	// The legacy backend terminates mTLS with the same (rotating) files.
	backTLS, err := tlsconf.NewServer(&config.TLS{CertFile: b.CertFile, KeyFile: b.KeyFile, CAFile: b.CAFile}, tlsconf.Options{Refresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer backTLS.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	back := legacy.NewServer(legacy.ServerOptions{})
	go func() { _ = back.Serve(tls.NewListener(ln, backTLS.Config())) }()
	t.Cleanup(func() { back.Close() })

	tlsY := func(f testpki.TLSFiles) string {
		return fmt.Sprintf("{cert_file: %q, key_file: %q, ca_file: %q}", f.CertFile, f.KeyFile, f.CAFile)
	}
	y := fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
tls: {refresh_interval: 20ms}
listeners:
  - name: mgp-in
    kind: private
    address: 127.0.0.1:0
    tls: %s
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    tls: %s
    routes: [{method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
  - name: legacy
    protocol: private
    endpoints: [%q]
    connections: 1
    tls: {cert_file: %q, key_file: %q, ca_file: %q}
`, tlsY(m), tlsY(m), backend(t, "A"), ln.Addr().String(), m.CertFile, m.KeyFile, m.CAFile)
	rt := start(t, mustParse(t, y))
	mgpAddr, grpcAddr := rt.Addr("mgp-in").String(), rt.Addr("grpc-in").String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	grpcWith := func(cfg *tls.Config) *grpc.ClientConn {
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return cc
	}
	grpcEcho := func(cc *grpc.ClientConn, body string) error {
		var out []byte
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		if err := cc.Invoke(cctx, "/legacy.Legacy/Echo", []byte(body), &out); err != nil {
			return err
		}
		if string(out) != body {
			return fmt.Errorf("echo %q", out)
		}
		return nil
	}

	// Established before the rotation, with CA one's material.
	old := peerTLS(t, c.CertFile, c.KeyFile, c.CAFile)
	estMGP, err := dialMGP(ctx, mgpAddr, old)
	if err != nil {
		t.Fatal(err)
	}
	defer estMGP.c.Close()
	if err := estMGP.echo("before"); err != nil {
		t.Fatalf("private listener mTLS: %v", err)
	}
	estGRPC := grpcWith(old)
	if err := grpcEcho(estGRPC, "before"); err != nil {
		t.Fatalf("grpc listener mTLS -> private upstream mTLS: %v", err)
	}
	backConns := back.Stats().Conns

	// Rotate every file to CA two (MeshGate's, the client's, the backend's).
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
	fresh := peerTLS(t, c.CertFile, c.KeyFile, c.CAFile) // CA two now

	// New private connections: served the new certificate, and the new
	// client certificate is accepted (verified against the new CA).
	for {
		nc, err := dialMGP(ctx, mgpAddr, fresh)
		if err == nil {
			err = nc.echo("fresh")
			_ = nc.c.Close()
			if err == nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("private listener never accepted CA two: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// New gRPC connections likewise.
	if err := grpcEcho(grpcWith(fresh), "fresh"); err != nil {
		t.Fatalf("grpc listener with CA two: %v", err)
	}
	// CA one's client certificate is now refused (the listener trusts the
	// new CA only); the client trusts the old CA, so it refuses too — use
	// a client that trusts CA two but presents CA one's certificate.
	stale := peerTLS(t, filepath.Join(oldDir, "client.pem"), filepath.Join(oldDir, "client-key.pem"), c.CAFile)
	if nc, err := dialMGP(ctx, mgpAddr, stale); err == nil {
		err = nc.echo("stale")
		_ = nc.c.Close()
		if err == nil {
			t.Fatal("private listener accepted a client certificate from the retired CA")
		}
	}
	// Established connections are untouched, and the private upstream
	// kept its connection.
	if err := estMGP.echo("after"); err != nil {
		t.Fatalf("established private connection after rotation: %v", err)
	}
	if err := grpcEcho(estGRPC, "after"); err != nil {
		t.Fatalf("established grpc connection after rotation: %v", err)
	}
	if got := back.Stats().Conns; got != backConns {
		t.Fatalf("private upstream reconnected during rotation (%d -> %d connections)", backConns, got)
	}
}
