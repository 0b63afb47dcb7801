package upstream_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// serveTLS serves a legacy server on addr behind TLS from srv and returns
// it with its bound address.
func serveTLS(t *testing.T, addr string, srv *tlsconf.Server) (*legacy.Server, string) {
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
	s := legacy.NewServer(legacy.ServerOptions{})
	go func() { _ = s.Serve(tls.NewListener(ln, srv.Config())) }()
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

// TestPrivateMTLSRotation: a private pool dials its upstream with mTLS;
// after the CA, the server's and the client's certificates are all
// replaced by a new CA's, the established multiplexed connection keeps
// serving, and the reconnect after a backend restart handshakes with the
// new material (the restarted backend trusts only the new CA).
func TestPrivateMTLSRotation(t *testing.T) {
	const refresh = 20 * time.Millisecond
	dir := t.TempDir()
	ca1, files, err := testpki.WriteSet(dir, "server", "client")
	if err != nil {
		t.Fatal(err)
	}
	_ = ca1
	sf, cf := files["server"], files["client"]
	srvTLS, err := tlsconf.NewServer(&config.TLS{CertFile: sf.CertFile, KeyFile: sf.KeyFile, CAFile: sf.CAFile}, tlsconf.Options{Refresh: refresh})
	if err != nil {
		t.Fatal(err)
	}
	defer srvTLS.Close()
	s1, addr := serveTLS(t, "127.0.0.1:0", srvTLS)

	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, LB: config.LBRoundRobin, Connections: 1,
		Heartbeat: 50 * time.Millisecond,
		TLS:       &config.TLS{CertFile: cf.CertFile, KeyFile: cf.KeyFile, CAFile: cf.CAFile, ServerName: "localhost"}}
	p, err := upstream.NewPrivatePool(u.WithDefaults(), mgp.New(0), nil, nil,
		upstream.WithBackoff(10*time.Millisecond, 50*time.Millisecond), upstream.WithTLSRefresh(refresh))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitHealthy(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if resp, err := call(ctx, p, 1, "before"); err != nil || string(resp.Body) != "before" {
		t.Fatalf("call over TLS: %v", err)
	}

	// Rotate CA, server and client certificates.
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
	// Wait until the backend serves the new certificate to new handshakes.
	probe, err := tlsconf.NewClient(&config.TLS{CertFile: cf.CertFile, KeyFile: cf.KeyFile, CAFile: cf.CAFile, ServerName: "localhost"}, tlsconf.Options{Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for {
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := probe.Handshake(ctx, raw, addr)
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
	conns := s1.Stats().Conns // the pool's one connection plus the probes

	// The established connection, heartbeats included, is unaffected.
	hb := s1.Stats().Heartbeats
	for s1.Stats().Heartbeats < hb+2 {
		select {
		case <-ctx.Done():
			t.Fatal("no heartbeats on the established connection after rotation")
		case <-time.After(10 * time.Millisecond):
		}
	}
	for i := range 5 {
		if resp, err := call(ctx, p, uint64(i), "after"); err != nil || string(resp.Body) != "after" {
			t.Fatalf("established connection after rotation: %v", err)
		}
	}
	if got := s1.Stats().Conns; got != conns {
		t.Fatalf("pool reconnected during rotation: %d connections, want %d", got, conns)
	}
	if st := p.Stats(); st.Healthy != 1 || st.Conns != 1 {
		t.Fatalf("pool stats after rotation: %+v", st)
	}

	// Restart the backend: the pool redials, and only the new material
	// (client certificate from CA two, trust in CA two) can connect.
	_ = s1.Close()
	s2, _ := serveTLS(t, addr, srvTLS)
	for {
		resp, err := call(ctx, p, 7, "fresh")
		if err == nil && string(resp.Body) == "fresh" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pool did not reconnect with the rotated material: %v", err)
		case <-time.After(refresh):
		}
	}
	if s2.Stats().Requests == 0 {
		t.Fatal("restarted backend saw no request")
	}
}

// TestPrivateTLSRefusesUntrustedServer: a backend whose certificate does
// not chain to ca_file never becomes healthy.
func TestPrivateTLSRefusesUntrustedServer(t *testing.T) {
	dir, otherDir := t.TempDir(), t.TempDir()
	_, files, err := testpki.WriteSet(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := testpki.WriteSet(otherDir, "x")
	if err != nil {
		t.Fatal(err)
	}
	sf := files["server"]
	srvTLS, err := tlsconf.NewServer(&config.TLS{CertFile: sf.CertFile, KeyFile: sf.KeyFile}, tlsconf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srvTLS.Close()
	s, addr := serveTLS(t, "127.0.0.1:0", srvTLS)
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, Connections: 1,
		TLS: &config.TLS{CAFile: other["x"].CAFile}}
	p, err := upstream.NewPrivatePool(u.WithDefaults(), mgp.New(0), nil, nil, upstream.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// With one connection slot, a second connection attempt means the
	// first handshake was refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for s.Stats().Conns < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("pool did not retry: %+v", p.Stats())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if st := p.Stats(); st.Healthy != 0 {
		t.Fatal("pool trusted a server outside ca_file")
	}
	if s.Stats().Requests != 0 {
		t.Fatal("a request reached the untrusted server")
	}
	// A bad ca_file is a construction error.
	u.TLS = &config.TLS{CAFile: dir + "/missing.pem"}
	if _, err := upstream.NewPrivatePool(u.WithDefaults(), mgp.New(0), nil, nil); err == nil {
		t.Fatal("missing ca_file accepted")
	}
}

// BenchmarkPrivatePoolDo compares one request/reply on a pooled private
// connection in plaintext and over mTLS (the handshake is outside the loop).
func BenchmarkPrivatePoolDo(b *testing.B) {
	dir := b.TempDir()
	_, files, err := testpki.WriteSet(dir, "server", "client")
	if err != nil {
		b.Fatal(err)
	}
	sf, cf := files["server"], files["client"]
	for _, mode := range []string{"plain", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{ln.Addr().String()}, Connections: 1}
			s := legacy.NewServer(legacy.ServerOptions{})
			if mode == "mtls" {
				srv, err := tlsconf.NewServer(&config.TLS{CertFile: sf.CertFile, KeyFile: sf.KeyFile, CAFile: sf.CAFile}, tlsconf.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				ln = tls.NewListener(ln, srv.Config())
				u.TLS = &config.TLS{CertFile: cf.CertFile, KeyFile: cf.KeyFile, CAFile: cf.CAFile}
			}
			go func() { _ = s.Serve(ln) }()
			defer s.Close()
			p, err := upstream.NewPrivatePool(u.WithDefaults(), mgp.New(0), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.WaitHealthy(ctx, 1); err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 1024)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := call(context.Background(), p, 1, string(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
