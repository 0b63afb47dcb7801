package testkit

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sim/legacy"
)

// Legacy serves a legacy (MGP/1) server on ln, or on 127.0.0.1:0 when ln
// is nil, behind TLS when cfg is not nil; it is closed at cleanup. It
// returns the server and its address (s.Addr() is set on return).
func Legacy(tb testing.TB, ln net.Listener, cfg *tls.Config, opts legacy.ServerOptions) (*legacy.Server, string) {
	tb.Helper()
	if ln == nil {
		ln = Listen(tb, "127.0.0.1:0")
	}
	addr := ln.Addr().String()
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	s := legacy.NewServer(opts)
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() { _ = s.Close() })
	// Serve records the address (s.Addr) as it starts: wait for it, so
	// callers may use s.Addr() at once.
	Eventually(tb, Context(tb, 5*time.Second), time.Millisecond, func() bool { return s.Addr() != nil }, "legacy server did not start")
	return s, addr
}

// LegacyClient is the reference legacy client connected to addr with
// opts (dialing for up to 10s), closed at cleanup.
func LegacyClient(tb testing.TB, addr string, opts legacy.ClientOptions) *legacy.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := legacy.Dial(ctx, addr, opts)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}
