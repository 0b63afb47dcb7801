package privconn_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// TestDialTLS: with Options.TLS, Dial completes a real TLS handshake and
// frames (requests and heartbeats) flow over it; an untrusted server and a
// peer that never answers the handshake fail with ErrTLS within the dial
// context.
func TestDialTLS(t *testing.T) {
	_, ca, files := testkit.PKI(t, "server")
	cert, err := tls.LoadX509KeyPair(files["server"].CertFile, files["server"].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := testkit.Legacy(t, nil, &tls.Config{Certificates: []tls.Certificate{cert}}, legacy.ServerOptions{})
	ctx := testkit.Context(t, 5*time.Second)
	trusting := func(context.Context) (*tls.Config, error) {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}, nil
	}
	cn, err := privconn.Dial(ctx, addr, mgp.New(0), privconn.Options{TLS: trusting, Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	resp, err := cn.Do(ctx, &codec.Frame{Cmd: 1, Body: []byte("over tls")})
	if err != nil || string(resp.Body) != "over tls" {
		t.Fatalf("Do over TLS: %v", err)
	}
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool { return cn.Stats().HeartbeatsRecv >= 2 }, "no heartbeats over TLS")

	other, err := testpki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	untrusting := func(context.Context) (*tls.Config, error) {
		return &tls.Config{RootCAs: other.Pool(), ServerName: "127.0.0.1"}, nil
	}
	if _, err := privconn.Dial(ctx, addr, mgp.New(0), privconn.Options{TLS: untrusting}); !errors.Is(err, privconn.ErrTLS) {
		t.Fatalf("untrusted server: %v, want ErrTLS", err)
	}

	// A peer that accepts TCP but never speaks TLS: the handshake is
	// bounded by the dial context.
	silent := testkit.Listen(t, "127.0.0.1:0")
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := silent.Accept(); err == nil {
			accepted <- c
		}
	}()
	dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer dcancel()
	start := time.Now()
	_, err = privconn.Dial(dctx, silent.Addr().String(), mgp.New(0), privconn.Options{TLS: trusting})
	if !errors.Is(err, privconn.ErrTLS) || time.Since(start) > 2*time.Second {
		t.Fatalf("silent peer: %v after %v", err, time.Since(start))
	}
	if c := <-accepted; c != nil {
		c.Close()
	}
}
