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
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// TestDialTLS: with Options.TLS, Dial completes a real TLS handshake and
// frames (requests and heartbeats) flow over it; an untrusted server and a
// peer that never answers the handshake fail with ErrTLS within the dial
// context.
func TestDialTLS(t *testing.T) {
	dir := t.TempDir()
	ca, files, err := testpki.WriteSet(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files["server"].CertFile, files["server"].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := legacy.NewServer(legacy.ServerOptions{})
	go func() { _ = s.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
	defer s.Close()
	addr := ln.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
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
	for cn.Stats().HeartbeatsRecv < 2 {
		select {
		case <-ctx.Done():
			t.Fatalf("no heartbeats over TLS: %+v", cn.Stats())
		case <-time.After(10 * time.Millisecond):
		}
	}

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
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
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
