package upstream_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// serveTLS serves a legacy server on addr behind TLS from srv and returns
// it with its bound address.
func serveTLS(t *testing.T, addr string, srv *tlsconf.Server) (*legacy.Server, string) {
	t.Helper()
	return testkit.Legacy(t, testkit.Listen(t, addr), srv.Config(), legacy.ServerOptions{})
}

// TestPrivateMTLSRotation: a private pool dials its upstream with mTLS;
// after the CA, the server's and the client's certificates are all
// replaced by a new CA's, the established multiplexed connection keeps
// serving, and the reconnect after a backend restart handshakes with the
// new material (the restarted backend trusts only the new CA).
func TestPrivateMTLSRotation(t *testing.T) {
	const refresh = 20 * time.Millisecond
	dir, _, files := testkit.PKI(t, "server", "client")
	sf, cf := files["server"], files["client"]
	srvTLS := testkit.TLSServer(t, sf, refresh)
	s1, addr := serveTLS(t, "127.0.0.1:0", srvTLS)

	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, LB: config.LBRoundRobin, Connections: 1,
		Heartbeat: 50 * time.Millisecond,
		TLS:       testkit.Config(cf, "localhost")}
	p := pooltest.Private(t, u.WithDefaults(), nil, 1, upstream.WithBackoff(10*time.Millisecond, 50*time.Millisecond), upstream.WithTLSRefresh(refresh))
	ctx := testkit.Context(t, 10*time.Second)
	if resp, err := call(ctx, p, 1, "before"); err != nil || string(resp.Body) != "before" {
		t.Fatalf("call over TLS: %v", err)
	}

	// Rotate CA, server and client certificates.
	newSrv := testkit.Rotate(t, dir, "ca-two", "server", "client")["server"]
	testkit.WaitServes(t, ctx, cf, addr, newSrv.Cert.SerialNumber, refresh)
	conns := s1.Stats().Conns // the pool's one connection plus the probes

	// The established connection, heartbeats included, is unaffected.
	hb := s1.Stats().Heartbeats
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool { return s1.Stats().Heartbeats >= hb+2 },
		"no heartbeats on the established connection after rotation")
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
	testkit.Succeeds(t, ctx, refresh, func() error {
		resp, err := call(ctx, p, 7, "fresh")
		if err == nil && string(resp.Body) != "fresh" {
			err = fmt.Errorf("reply %q", resp.Body)
		}
		return err
	}, "pool did not reconnect with the rotated material")
	if s2.Stats().Requests == 0 {
		t.Fatal("restarted backend saw no request")
	}
}

// TestPrivateTLSRefusesUntrustedServer: a backend whose certificate does
// not chain to ca_file never becomes healthy.
func TestPrivateTLSRefusesUntrustedServer(t *testing.T) {
	dir, _, files := testkit.PKI(t, "server")
	_, _, other := testkit.PKI(t, "x")
	sf := files["server"]
	sf.CAFile = "" // no client certificates asked
	srvTLS := testkit.TLSServer(t, sf, 0)
	s, addr := serveTLS(t, "127.0.0.1:0", srvTLS)
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, Connections: 1,
		TLS: &config.TLS{CAFile: other["x"].CAFile}}
	p := pooltest.Private(t, u.WithDefaults(), nil, 0, upstream.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	// With one connection slot, a second connection attempt means the
	// first handshake was refused.
	ctx := testkit.Context(t, 5*time.Second)
	testkit.Succeeds(t, ctx, 10*time.Millisecond, func() error {
		if s.Stats().Conns >= 3 {
			return nil
		}
		return fmt.Errorf("%+v", p.Stats())
	}, "pool did not retry")
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
	_, _, files := testkit.PKI(b, "server", "client")
	for _, mode := range []string{"plain", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			var srvTLS *tls.Config
			var cliTLS *config.TLS
			if mode == "mtls" {
				srvTLS = testkit.TLSServer(b, files["server"], 0).Config()
				cliTLS = testkit.Config(files["client"], "")
			}
			_, addr := testkit.Legacy(b, nil, srvTLS, legacy.ServerOptions{})
			u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, Connections: 1, TLS: cliTLS}
			p := pooltest.Private(b, u.WithDefaults(), nil, 1)
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
