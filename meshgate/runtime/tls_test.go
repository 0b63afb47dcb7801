package runtime

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
)

// peerTLS is a static client tls.Config from files as they are now (a
// client that does not rotate).
func peerTLS(t *testing.T, f testpki.TLSFiles, serverName string) *tls.Config {
	t.Helper()
	cfg, err := f.ClientConfig(serverName)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
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

// echoOnce is one MGP/1 echo on a new TLS connection.
func echoOnce(ctx context.Context, addr string, cfg *tls.Config, body string) error {
	c, err := dialMGP(ctx, addr, cfg)
	if err != nil {
		return err
	}
	defer c.c.Close()
	return c.echo(body)
}

// TestPrivateListenerMTLS: a private listener terminating mTLS.
func TestPrivateListenerMTLS(t *testing.T) {
	_, _, files := testkit.PKI(t, "meshgate", "client")
	y := fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
  - name: mtls
    kind: private
    address: 127.0.0.1:0
    tls: %s
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, files["meshgate"].YAML(), backend(t, "A"))
	rt := start(t, mustParse(t, y))
	addr := rt.Addr("mtls").String()
	ctx := testkit.Context(t, 10*time.Second)
	cfg := peerTLS(t, files["client"], "meshgate")
	if err := echoOnce(ctx, addr, cfg, "secure"); err != nil {
		t.Fatalf("mTLS round trip: %v", err)
	}
	cfg.Certificates = nil
	if err := echoOnce(ctx, addr, cfg, "secure"); err == nil {
		t.Fatal("client without certificate was served")
	}
}

// TestTLSRotationEveryHop: a private listener and a grpc listener both
// terminating mTLS, and a private upstream dialed with mTLS, all from one
// directory of files. The CA and every certificate and key are replaced
// by a new CA's: connections established before keep working; new
// connections are served the new certificate and verified against the new
// CA, and a client certificate from the old CA is refused. (Before, CA
// files were never re-read and private upstream TLS was refused.)
func TestTLSRotationEveryHop(t *testing.T) {
	dir, _, files := testkit.PKI(t, "meshgate", "client", "backend")
	m, c, b := files["meshgate"], files["client"], files["backend"]
	old := testkit.KeepCopy(t, c) // CA one's client material

	// The legacy backend terminates mTLS with the same (rotating) files.
	back, backAddr := testkit.Legacy(t, nil, testkit.TLSServer(t, b, 20*time.Millisecond).Config(), legacy.ServerOptions{})
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
    tls: %s
`, m.YAML(), m.YAML(), backend(t, "A"), backAddr, m.YAML())
	rt := start(t, mustParse(t, y))
	mgpAddr, grpcAddr := rt.Addr("mgp-in").String(), rt.Addr("grpc-in").String()
	ctx := testkit.Context(t, 10*time.Second)

	grpcWith := func(cfg *tls.Config) *grpc.ClientConn { return testkit.ClientTLS(t, grpcAddr, cfg) }
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
	estMGP, err := dialMGP(ctx, mgpAddr, peerTLS(t, c, "localhost"))
	if err != nil {
		t.Fatal(err)
	}
	defer estMGP.c.Close()
	if err := estMGP.echo("before"); err != nil {
		t.Fatalf("private listener mTLS: %v", err)
	}
	estGRPC := grpcWith(peerTLS(t, c, "localhost"))
	if err := grpcEcho(estGRPC, "before"); err != nil {
		t.Fatalf("grpc listener mTLS -> private upstream mTLS: %v", err)
	}
	backConns := back.Stats().Conns

	// Rotate every file to CA two (MeshGate's, the client's, the backend's).
	testkit.Rotate(t, dir, "ca-two", "meshgate", "client", "backend")
	fresh := peerTLS(t, c, "localhost") // CA two now

	// New private connections: served the new certificate, and the new
	// client certificate is accepted (verified against the new CA).
	testkit.Succeeds(t, ctx, 20*time.Millisecond, func() error { return echoOnce(ctx, mgpAddr, fresh, "fresh") },
		"private listener never accepted CA two")
	// New gRPC connections likewise.
	if err := grpcEcho(grpcWith(fresh), "fresh"); err != nil {
		t.Fatalf("grpc listener with CA two: %v", err)
	}
	// CA one's client certificate is now refused (the listener trusts the
	// new CA only); the client trusts the old CA, so it refuses too — use
	// a client that trusts CA two but presents CA one's certificate.
	stale := peerTLS(t, testpki.TLSFiles{CertFile: old.CertFile, KeyFile: old.KeyFile, CAFile: c.CAFile}, "localhost")
	if err := echoOnce(ctx, mgpAddr, stale, "stale"); err == nil {
		t.Fatal("private listener accepted a client certificate from the retired CA")
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
