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
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/e2e/harness"
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
// component that must be given its address rather than report one):
// harness.FreeAddr, for the tests that use testkit alone.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return harness.FreeAddr(tb)
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

// Within polls cond every 10ms for up to d; the test fails ("timed out
// after d waiting for what") if it never holds.
func Within(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	Eventually(tb, ctx, 10*time.Millisecond, cond, "timed out after %s waiting for %s", d, what)
}

// Await polls cond every 5ms for up to d and reports whether it held; the
// caller then asserts the state with its own message.
func Await(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// ServeConns accepts connections on ln and runs handle on each in its own
// goroutine until cleanup, which closes ln and every accepted connection
// and waits for the handlers.
func ServeConns(tb testing.TB, ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// Get fetches url and returns the status code and body.
func Get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	return HTTP(tb, http.MethodGet, url, "", "")
}

// HTTP sends one request (Content-Type ctype when not empty, headers as
// name, value pairs) and returns the status code and body.
func HTTP(tb testing.TB, method, url, ctype, body string, hdr ...string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// InUse is the process's heap in use and goroutine stack bytes after two
// GCs (the second frees what the first one's finalizers released; GCs
// also shrink stacks using less than a quarter of their size): what idle
// connection benchmarks subtract before and after opening connections.
func InUse() (heap, stack int64) {
	var m goruntime.MemStats
	goruntime.GC()
	goruntime.GC()
	goruntime.ReadMemStats(&m)
	return int64(m.HeapInuse), int64(m.StackInuse)
}

// PerConn measures, across a benchmark's iterations, the heap and stack
// bytes in use (InUse) per connection opened between Start and Stop.
type PerConn struct {
	heap, stack float64
	h0, s0      int64
}

// Start takes the baseline of one iteration.
func (m *PerConn) Start() { m.h0, m.s0 = InUse() }

// Stop adds the growth since Start, divided by the n connections opened.
func (m *PerConn) Stop(n int) {
	h, s := InUse()
	m.heap += float64(h-m.h0) / float64(n)
	m.stack += float64(s-m.s0) / float64(n)
}

// Report reports the mean per iteration as idle-B/conn, heap-B/conn and
// stack-B/conn.
func (m *PerConn) Report(b *testing.B) {
	b.ReportMetric((m.heap+m.stack)/float64(b.N), "idle-B/conn")
	b.ReportMetric(m.heap/float64(b.N), "heap-B/conn")
	b.ReportMetric(m.stack/float64(b.N), "stack-B/conn")
}

// Goroutines counts the goroutines whose stack has a frame containing
// frame (e.g. "inbound.(*conn)."): what a test of goroutine-free idle
// connections counts.
func Goroutines(frame string) int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for g := range bytes.SplitSeq(b.Bytes(), []byte("\n\n")) {
		if bytes.Contains(g, []byte(frame)) {
			n++
		}
	}
	return n
}
