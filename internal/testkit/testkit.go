// Package testkit is the shared scaffolding of MeshGate's unit tests:
// listeners on 127.0.0.1, polling with a bounded context, a configurable
// gRPC stub server and raw-codec client, a legacy (private protocol)
// backend, and mTLS material with its rotation. Everything here is real
// (TCP, TLS, grpc-go); every helper fails the test on error and registers
// its own cleanup.
//
// Import it only from _test.go files: the product binary must never link
// it (meshgate/cmd/meshgate's TestProductLinksNoTools checks).
package testkit

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// Listen listens on addr ("127.0.0.1:0" for a fresh port). A just-closed
// port may need a moment to rebind, so it retries for up to a second.
// The listener is closed at cleanup.
func Listen(tb testing.TB, addr string) net.Listener {
	tb.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	return ln
}

// FreeAddr is a loopback address that was free a moment ago (for a
// component that must be given its address rather than report one).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Context is a context that ends after d or at cleanup.
func Context(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every interval until it holds; when ctx ends
// first, the test fails with the message format/args.
func Eventually(tb testing.TB, ctx context.Context, interval time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			tb.Fatalf("%s (%v)", fmt.Sprintf(format, args...), ctx.Err())
		case <-time.After(interval):
		}
	}
}

// Succeeds calls f every interval until it returns nil; when ctx ends
// first, the test fails with what and f's last error.
func Succeeds(tb testing.TB, ctx context.Context, interval time.Duration, f func() error, what string) {
	tb.Helper()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%s: %v", what, err)
		case <-time.After(interval):
		}
	}
}
