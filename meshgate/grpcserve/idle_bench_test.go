package grpcserve

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// BenchmarkIdleConnBytes: heap and goroutine stacks per idle connection
// (one call made, then idle), N = 500, in-process; the raw clients' own
// memory is included (a Framer, an HPACK encoder and a socket each).
// MESHGATE_HEAPPROFILE=FILE writes a heap profile while the connections
// are open.
func BenchmarkIdleConnBytes(b *testing.B) {
	const n = 500
	if os.Getenv("MESHGATE_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	s := New(Config{Name: "l", Handler: handlerFunc(echo), Blocking: true, IdleGrace: 50 * time.Millisecond, RecvTimeout: 400 * time.Millisecond})
	ln := testkit.Listen(b, "127.0.0.1:0")
	go func() { _ = s.Serve(ln) }()
	defer s.Close()
	addr := ln.Addr().String()
	var m testkit.PerConn
	for i := 0; i < b.N; i++ {
		m.Start()
		conns := make([]*rawClient, 0, n)
		for range n {
			rc := rawDial(b, addr)
			rc.headers(1, false, grpcReq...)
			_ = rc.fr.WriteData(1, true, msg([]byte("warm")))
			if _, err := rc.until(func(f http2.Frame) bool {
				h, ok := f.(*http2.MetaHeadersFrame)
				return ok && h.StreamEnded()
			}); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, rc)
		}
		deadline := time.Now().Add(5 * time.Second)
		for s.held.Load() > 0 && time.Now().Before(deadline) { // the connections park
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // past IdleGrace: the waits move to small goroutines
		m.Stop(n)
		if p := os.Getenv("MESHGATE_HEAPPROFILE"); p != "" {
			f, _ := os.Create(p)
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
		for _, rc := range conns {
			_ = rc.nc.Close()
		}
	}
	m.Report(b)
}

// BenchmarkUnary: one 1 KB unary call from a grpc-go client to an echo
// handler with metadata and a deadline (client and server in-process).
func BenchmarkUnary(b *testing.B) {
	benchUnary(b, Config{Name: "l", Handler: handlerFunc(echo), Blocking: true})
}

// benchUnary measures 1 KB unary calls of /t.S/M to a server with cfg.
func benchUnary(b *testing.B, cfg Config) {
	ts := start(b, cfg.Handler, func(c *Config) { *c = cfg })
	cc := dial(b, ts.addr)
	req := make([]byte, 1024)
	var resp []byte
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-mgp-uin", "42")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := cc.Invoke(cctx, "/t.S/M", req, &resp); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}

// TestIdleShrinks: a connection that parks after IdleGrace holds no
// HPACK encoder (nor its dynamic table) and no header scratch buffer
// (idle.go, shrink); the next calls of the same grpc-go client still
// decode every header and trailer (the first header block after the idle
// period empties the client's copy of the table with size updates), and
// the connection parks small again.
func TestIdleShrinks(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.IdleGrace = 50 * time.Millisecond })
	cc := dial(t, ts.addr)
	for i := range 3 {
		var hdr, trl metadata.MD
		var resp []byte
		want := "v" + strings.Repeat("x", i)
		ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "echo-k", want)
		if err := cc.Invoke(ctx, "/t.S/M", []byte("a"), &resp, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
			t.Fatal(err)
		}
		if string(resp) != "a" || len(hdr["echo-k"]) != 1 || hdr["echo-k"][0] != want || len(trl["t-echo-k"]) != 1 || trl["t-echo-k"][0] != want {
			t.Fatalf("call %d: %q header %v trailer %v", i, resp, hdr, trl)
		}
		c := ts.onlyConn(t)
		testkit.Within(t, 2*time.Second, "connection parked", func() bool { return c.parked.Load() })
		c.wmu.Lock()
		enc, scratch := c.henc, c.hbuf.b
		c.wmu.Unlock()
		if enc != nil || scratch != nil {
			t.Fatalf("parked connection keeps its HPACK encoder (%v) or %d bytes of header scratch", enc != nil, cap(scratch))
		}
	}
}

// TestIdleBeforeFirstCall: a connection that parks after its handshake,
// and again after a PING (no header block decoded yet), then serves its
// first call.
func TestIdleBeforeFirstCall(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.IdleGrace = 20 * time.Millisecond })
	rc := rawDial(t, ts.addr)
	c := ts.onlyConnWithin(t)
	testkit.Within(t, 2*time.Second, "parked after the handshake", func() bool { return c.parked.Load() })
	_ = rc.fr.WritePing(false, [8]byte{1})
	if _, err := rc.until(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }); err != nil {
		t.Fatal(err)
	}
	testkit.Within(t, 2*time.Second, "parked after the PING", func() bool { return c.parked.Load() && !c.wokenLocked() })
	rc.wantOK(1, "first call")
}

// onlyConn is the server's one connection.
func (ts *testServer) onlyConn(t *testing.T) *conn {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.conns) != 1 {
		t.Fatalf("%d connections", len(ts.conns))
	}
	for c := range ts.conns {
		return c
	}
	return nil
}

// onlyConnWithin waits for the server's one connection.
func (ts *testServer) onlyConnWithin(t *testing.T) *conn {
	t.Helper()
	testkit.Within(t, 2*time.Second, "one connection", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns) == 1
	})
	return ts.onlyConn(t)
}

// wokenLocked reports whether the connection holds its HPACK encoder
// (under wmu): true between a wake-up and the next park.
func (c *conn) wokenLocked() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.henc != nil
}

// pingProbe answers calls on the reading goroutine (InlineStarter) and
// reports, when a call starts, whether a PING ack was pending unwritten.
type pingProbe struct{ seen chan bool }

func (p pingProbe) Start(c *Call) { c.Finish(nil) }

func (p pingProbe) TryStart(cl *Call) bool {
	cl.c.wmu.Lock()
	pending := cl.c.wb != nil && cl.c.lazyOnly
	cl.c.wmu.Unlock()
	p.seen <- pending
	cl.Finish(nil)
	return true
}

// TestPingAckRidesWithReply: a PING that arrives with no call in flight
// (a grpc-go client's BDP ping after each reply it reads) is not written
// on its own: its ack waits, and leaves with the next reply's write.
func TestPingAckRidesWithReply(t *testing.T) {
	p := pingProbe{seen: make(chan bool, 1)}
	ts := start(t, p, nil)
	rc := rawDial(t, ts.addr)
	rc.wantOK(1, "first call")
	<-p.seen
	_ = rc.fr.WritePing(false, [8]byte{7})
	rc.headers(3, false, grpcReq...)
	_ = rc.fr.WriteData(3, true, msg([]byte("b")))
	if !<-p.seen {
		t.Fatal("the PING ack was written on its own before the next reply")
	}
	acked := false
	if _, err := rc.until(func(f http2.Frame) bool {
		if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() && pf.Data == [8]byte{7} {
			acked = true
		}
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == 3 && h.StreamEnded()
	}); err != nil || !acked {
		t.Fatalf("reply with the ack: acked %v, %v", acked, err)
	}
}

// BenchmarkIdleConnBytesGRPC: what the server keeps per idle connection
// of real grpc-go clients (grpc.NewClient over 127.0.0.1, raw codec, one
// unary call each, N = 500, in-process), at two moments: right after the
// calls ("busy": what the process holds while a burst of connections is
// being opened, which sets its heap's high-water mark) and after
// IdleGrace ("idle"). server-*-B/conn counts only allocations made by
// this package's frames or under its Serve (the socket it accepts), from
// the heap profile (MemProfileRate 1, after GC): the clients' own memory
// is not ours. idle-B/conn, heap-B/conn and stack-B/conn count both
// sides. MESHGATE_HEAPPROFILE=FILE writes the idle heap profile.
func BenchmarkIdleConnBytesGRPC(b *testing.B) {
	const n = 500
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = rate }()
	s := New(Config{Name: "l", Handler: handlerFunc(echo), Blocking: true, IdleGrace: 200 * time.Millisecond})
	ln := testkit.Listen(b, "127.0.0.1:0")
	go func() { _ = s.Serve(ln) }()
	defer s.Close()
	addr := ln.Addr().String()
	var m testkit.PerConn
	var busy, idle float64
	for i := 0; i < b.N; i++ {
		base := serverHeap()
		m.Start()
		conns := make([]*grpc.ClientConn, 0, n)
		for range n {
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, cc)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for _, cc := range conns {
			var resp []byte
			if err := cc.Invoke(ctx, "/t.S/M", []byte("warm"), &resp); err != nil {
				b.Fatal(err)
			}
		}
		cancel()
		busy += float64(serverHeap()-base) / n
		if !waitParked(s, n, 10*time.Second) {
			b.Fatal("the connections did not park")
		}
		m.Stop(n)
		idle += float64(serverHeap()-base) / n
		if p := os.Getenv("MESHGATE_HEAPPROFILE"); p != "" {
			f, _ := os.Create(p)
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
		for _, cc := range conns {
			_ = cc.Close()
		}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.conns) > 0 }() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	m.Report(b)
	b.ReportMetric(busy/float64(b.N), "server-busy-B/conn")
	b.ReportMetric(idle/float64(b.N), "server-idle-B/conn")
}

// waitParked polls until n connections of s are parked (idle.go).
func waitParked(s *Server, n int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		k := 0
		s.mu.Lock()
		for c := range s.conns {
			if c.parked.Load() {
				k++
			}
		}
		s.mu.Unlock()
		if k >= n {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// serverHeap is the heap in use (after GC, MemProfileRate 1) allocated
// by this package's code or below its Serve.
func serverHeap() int64 {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for {
		k, ok := runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:k]
			break
		}
		recs = make([]runtime.MemProfileRecord, k+64)
	}
	var sum int64
	for i := range recs {
		r := &recs[i]
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if strings.Contains(f.Function, "meshgate/meshgate/grpcserve.") && !strings.Contains(f.Function, "grpcserve.Benchmark") && !strings.Contains(f.Function, "grpcserve.serverHeap") {
				sum += r.InUseBytes()
				break
			}
			if !more {
				break
			}
		}
	}
	return sum
}
