//go:build linux

package grpcserve

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/internal/testkit"
)

// connGoroutines counts the goroutines running a conn method of this
// package (the reading goroutine or an idle wait).
func connGoroutines() int { return testkit.Goroutines("grpcserve.(*conn).") }

// parkedIn reports whether c is in its server's parker.
func parkedIn(c *conn) bool {
	return c.s.park.Holds(&c.pk)
}

// TestParkedHoldsNoGoroutine: a grpc-go client's connection idle for
// IdleGrace is held by the parker without any goroutine; the next call
// (after the grace) wakes it and is served with its header and trailer
// metadata, several times over; a client that then goes away is noticed
// while parked (the connection is removed), and so is a server Close
// (goleak, and Close returning, in the cleanup).
func TestParkedHoldsNoGoroutine(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.IdleGrace = 30 * time.Millisecond })
	cc := dial(t, ts.addr)
	for i := range 3 {
		callEcho(t, cc, i)
		c := ts.onlyConn(t)
		testkit.Within(t, 2*time.Second, "connection parked without a goroutine", func() bool {
			return parkedIn(c) && connGoroutines() == 0
		})
	}
	c := ts.onlyConn(t)
	_ = cc.Close()
	testkit.Within(t, 2*time.Second, "parked connection removed after the client closed", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns) == 0 && !parkedIn(c)
	})

	cc2 := dial(t, ts.addr)
	callEcho(t, cc2, 0)
	c2 := ts.onlyConnWithin(t)
	testkit.Within(t, 2*time.Second, "second connection parked", func() bool { return parkedIn(c2) })
	ts.Close() // unparks and ends it; Cleanup's Close is a no-op then
	if parkedIn(c2) || connGoroutines() != 0 {
		t.Fatal("a parked connection outlived Close")
	}
	testkit.Within(t, 2*time.Second, "client sees the connection gone", func() bool {
		s := cc2.GetState()
		return s == connectivity.Idle || s == connectivity.TransientFailure || s == connectivity.Connecting
	})
}

// callEcho makes one echo call on cc with metadata that must come back
// in the header and the trailer (HPACK state on both sides).
func callEcho(t *testing.T, cc *grpc.ClientConn, i int) {
	t.Helper()
	var hdr, trl metadata.MD
	var resp []byte
	want := "v" + strings.Repeat("x", i)
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "echo-k", want)
	if err := cc.Invoke(ctx, "/t.S/M", []byte("a"), &resp, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
		t.Fatalf("call %d: %v", i, err)
	}
	if string(resp) != "a" || len(hdr["echo-k"]) != 1 || hdr["echo-k"][0] != want || len(trl["t-echo-k"]) != 1 || trl["t-echo-k"][0] != want {
		t.Fatalf("call %d: %q header %v trailer %v", i, resp, hdr, trl)
	}
}

// BenchmarkCallAfterPark: one call of a grpc-go client on a connection
// parked (IdleGrace passed) before each call: the wake-up's cost
// (allocs/op minus BenchmarkUnary's is what waking adds: the goroutine,
// the Framer, the HPACK encoder). The wait for the park is outside the
// timer.
func BenchmarkCallAfterPark(b *testing.B) {
	// parked: the connection parks (no goroutine) before each call;
	// waiting: the same pause (10 ms) with the reading goroutine blocked
	// in its read, as it is within IdleGrace. The difference is the cost
	// of the wake-up.
	b.Run("parked", func(b *testing.B) { benchCallAfterPause(b, time.Millisecond, true) })
	b.Run("waiting", func(b *testing.B) { benchCallAfterPause(b, time.Hour, false) })
}

func benchCallAfterPause(b *testing.B, grace time.Duration, park bool) {
	ts := start(b, handlerFunc(echo), func(c *Config) { c.IdleGrace = grace })
	s, cc := ts.Server, dial(b, ts.addr)
	req := make([]byte, 1024)
	var resp []byte
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-mgp-uin", "42")
	if err := cc.Invoke(ctx, "/t.S/M", req, &resp); err != nil {
		b.Fatal(err)
	}
	var c *conn
	s.mu.Lock()
	for sc := range s.conns {
		c = sc
	}
	s.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		time.Sleep(10 * time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for park && !parkedIn(c) {
			if time.Now().After(deadline) {
				b.Fatal("the connection did not park")
			}
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
		if err := cc.Invoke(ctx, "/t.S/M", req, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParkedKeepaliveAndMaxAge: a parked connection (no goroutine) is
// still PINGed after KeepaliveTime, and its ack wakes it and it parks
// again; at MaxConnectionAge it gets GOAWAY NO_ERROR and is closed (the
// housekeeping timer's work, unchanged by parking).
func TestParkedKeepaliveAndMaxAge(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) {
		c.IdleGrace = 20 * time.Millisecond
		c.KeepaliveTime, c.KeepaliveTimeout = 150*time.Millisecond, 2*time.Second
		c.MaxConnectionAge, c.MaxConnectionAgeGrace = 600*time.Millisecond, 300*time.Millisecond
	})
	rc := rawDial(t, ts.addr)
	rc.wantOK(1, "first call")
	c := ts.onlyConn(t)
	testkit.Within(t, 2*time.Second, "parked", func() bool { return parkedIn(c) })
	f, err := rc.until(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() })
	if err != nil {
		t.Fatalf("keepalive PING to a parked connection: %v", err)
	}
	_ = rc.fr.WritePing(true, f.(*http2.PingFrame).Data)
	testkit.Within(t, 2*time.Second, "parked again after the PING ack", func() bool { return parkedIn(c) && connGoroutines() == 0 })
	code, err := rc.goAway()
	if err != nil || code != http2.ErrCodeNo {
		t.Fatalf("max age: GOAWAY %v %v", code, err)
	}
	if _, err := rc.until(func(http2.Frame) bool { return false }); err == nil {
		t.Fatal("connection not closed after max age")
	}
	testkit.Within(t, 2*time.Second, "connection removed", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns) == 0 && !parkedIn(c)
	})
}
