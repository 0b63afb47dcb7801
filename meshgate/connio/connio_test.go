package connio

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestWorkersReuseAndOverflow: sequential requests run on the worker that
// is parked (no new goroutine per request); with every worker busy a
// request still runs at once on a goroutine of its own; Close waits for
// all of them.
func TestWorkersReuseAndOverflow(t *testing.T) {
	var w Workers[chan struct{}]
	var ran atomic.Int64
	w.Init(func(c chan struct{}) {
		if c != nil {
			<-c
		}
		ran.Add(1)
	})
	for i := 0; i < 50; i++ {
		w.Dispatch(nil)
		deadline := time.Now().Add(5 * time.Second)
		for ran.Load() != int64(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("request %d did not run", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Sequential requests find the parked worker (a worker may not have
	// parked yet when the next one comes: allow a few).
	if n := w.Started(); n > 4 {
		t.Fatalf("%d workers started for 50 sequential requests", n)
	}
	block := make(chan struct{})
	busy := 2*w.max + 3
	for i := 0; i < busy; i++ {
		w.Dispatch(block)
	}
	if n := w.Started(); n > w.max {
		t.Fatalf("%d workers started, max %d", n, w.max)
	}
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	close(block)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the requests ended")
	}
	// Close returns only after every request, workers' and overflow
	// goroutines' alike, has finished.
	if got := ran.Load(); got != int64(50+busy) {
		t.Fatalf("Close returned after %d requests, want all %d", got, 50+busy)
	}
}

// TestPeekerReady: on a real TCP socket Ready is false while nothing is
// there, true once a byte arrives (and the byte is still there to read),
// and true at end of stream.
func TestPeekerReady(t *testing.T) {
	if !PeekSupported {
		t.Skip("no MSG_PEEK wait on this OS")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	var srv net.Conn
	go func() { defer wg.Done(); srv, _ = ln.Accept() }()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if srv == nil {
		t.Fatal("accept failed")
	}
	defer srv.Close()
	raw, err := srv.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var p Peeker
	ready := func() bool {
		var r bool
		if err := raw.Control(func(fd uintptr) { r = p.Ready(fd) }); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if ready() {
		t.Fatal("ready with nothing sent")
	}
	if _, err := cl.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := raw.Read(p.Ready); err != nil { // parks until readable
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if n, err := srv.Read(b); n != 1 || b[0] != 'x' || err != nil {
		t.Fatalf("read after peek: %d %q %v", n, b[:n], err)
	}
	cl.Close()
	if err := raw.Read(p.Ready); err != nil { // end of stream is ready too
		t.Fatal(err)
	}
	if !ready() {
		t.Fatal("not ready at end of stream")
	}
}

// TestDrain: a wait that returns first ends Drain without force; a ctx
// that ends first runs force, which ends the wait, and Drain returns the
// context's error only after the wait returned.
func TestDrain(t *testing.T) {
	if err := Drain(context.Background(), func() {}, func() { t.Error("force ran") }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stop := make(chan struct{})
	var waited atomic.Bool
	err := Drain(ctx, func() { <-stop; waited.Store(true) }, func() { close(stop) })
	if !errors.Is(err, context.Canceled) || !waited.Load() {
		t.Fatalf("Drain = %v, wait returned %v; want Canceled after the wait", err, waited.Load())
	}
}
