package inbound

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// warnCounter is a slog.Handler counting Warn records by message.
type warnCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.n[r.Message]++
	w.mu.Unlock()
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }
func (w *warnCounter) count(msg string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n[msg]
}

// TestAttackHostileClientsWellBehavedServed: while hostile clients work
// on the same listener — clients that pipeline large requests and never
// read the replies, a flood of connections that each send a malformed
// frame, a client reusing one seq while it is in flight — a well-behaved
// client's calls all succeed. Every malformed connection is counted, but
// the log gets at most one line a second about them (before: one Warn
// line per connection, which a client controls).
func TestAttackHostileClientsWellBehavedServed(t *testing.T) {
	wc := &warnCounter{n: map[string]int{}}
	e := newEnv(t, envOpts{sendTO: 300 * time.Millisecond, log: slog.New(wc)})
	good := e.dial()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()

	// Non-readers: 3 connections, 200 × 64 KiB echo requests each.
	body := bytes.Repeat([]byte("n"), 64<<10)
	var reqs []byte
	for i := range 200 {
		reqs, _ = e.codec.Append(reqs, &codec.Frame{Cmd: cmdEcho, Seq: uint32(i + 1), Body: body})
	}
	for range 3 {
		nc, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.(*net.TCPConn).SetReadBuffer(4096)
		wg.Add(1)
		go func() { // ends when the server cuts the connection off
			defer wg.Done()
			defer nc.Close()
			_, _ = nc.Write(reqs)
			<-stop
		}()
	}

	// Malformed-frame flood: 100 connections, one bad frame each.
	bad := validFrame(t)
	bad[0] = 0x7f
	const floods = 100
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range floods {
			nc, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = nc.Write(bad)
			_, _ = io.Copy(io.Discard, nc) // until the server closes it
			nc.Close()
		}
	}()

	// Seq reuse: the same seq sent again while the first is in flight.
	reuse := e.dial()
	var dupRejected atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			var buf []byte
			buf, _ = e.codec.Append(buf, &codec.Frame{Cmd: cmdSleep, Seq: 7, Body: []byte("20ms")})
			buf, _ = e.codec.Append(buf, &codec.Frame{Cmd: cmdEcho, Seq: 7, Body: []byte("dup")})
			reuse.write(buf)
			for range 2 {
				select {
				case f, ok := <-reuse.got:
					if !ok {
						t.Error("the seq-reusing client was disconnected")
						return
					}
					if f.Result == codec.ResultBadRequest {
						dupRejected.Add(1)
					}
				case <-time.After(5 * time.Second):
					t.Error("no reply to the seq-reusing client")
					return
				}
			}
		}
	}()

	// The well-behaved client, throughout.
	for i := 0; i < 300; i++ {
		want := []byte{byte(i), byte(i >> 8)}
		r, ok := good.call(codec.Frame{Cmd: cmdEcho, Body: want})
		if !ok || r.Result != 0 || !bytes.Equal(r.Body, want) {
			t.Fatalf("good client call %d during the attack: ok=%v result=%d %s", i, ok, r.Result, errMsg(r))
		}
	}
	testkit.Within(t, 10*time.Second, "the non-reading connections cut off", func() bool { return e.srv.Conns() <= 2 })
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	if n := dupRejected.Load(); n != 20 {
		t.Errorf("%d of 20 duplicate seqs rejected", n)
	}
	if n := int(testutil.ToFloat64(e.metrics.Malformed.WithLabelValues("priv", "stx"))); n != floods {
		t.Errorf("malformed connections counted %d, want %d", n, floods)
	}
	lines := wc.count("malformed frame, closing connection")
	if max := 1 + int(elapsed/time.Second); lines > max {
		t.Errorf("%d Warn lines about malformed frames in %v (at most %d: one a second)", lines, elapsed.Round(time.Millisecond), max)
	}
	t.Logf("%v: %d malformed lines logged for %d connections", elapsed.Round(time.Millisecond), lines, floods)
}

// TestAttackStreamFloodListenerCap: stream exchanges count against the
// listener-wide cap (overload.max_in_flight) like unary requests: three
// connections opening held streams get result 6 past the cap, and the
// slots come back when the exchanges end. Before, streams bypassed the
// listener cap (only the per-connection max_in_flight and 256 exchanges
// bounded them, times max_connections).
func TestAttackStreamFloodListenerCap(t *testing.T) {
	base := newStreamEnv(t)
	tb := base.srv.table.Load()
	routes := make([]Route, 0, 3)
	for _, cmd := range []uint32{30, 31, cmdEcho} {
		routes = append(routes, *tb.Lookup(cmd, 0))
	}
	nt := NewTable("priv", routes, Limits{MaxInFlight: 16, IdleTimeout: time.Minute, ReadTimeout: 10 * time.Second}, nil, nil)
	nt.Admission = resilience.NewAdmission(&config.Overload{MaxInFlight: 8})
	base.srv.SetTable(nt)

	var cls []*client
	overloaded := 0
	for range 3 {
		cl := base.dial()
		cls = append(cls, cl)
		for seq := uint32(1); seq <= 4; seq++ {
			send(cl, codec.Frame{Cmd: 31, Seq: seq, Flags: codec.FlagMore, Body: []byte("x")})
		}
	}
	// Rejections come back at once; held exchanges answer nothing yet.
	// A unary call on each connection orders the replies: once it is
	// answered, every rejection sent before it has arrived.
	for _, cl := range cls {
		r, ok := cl.call(codec.Frame{Cmd: cmdEcho, Seq: 100, Body: []byte("u")})
		if !ok {
			t.Fatal("connection closed")
		}
		if r.Result == codec.ResultOverloaded {
			overloaded++ // the unary call itself found the listener full
		}
		for done := false; !done; {
			select {
			case f := <-cl.got:
				if f.Seq != 100 && f.Result == codec.ResultOverloaded {
					overloaded++
				}
			default:
				done = true
			}
		}
	}
	if overloaded < 4 {
		t.Fatalf("12 held streams against a listener cap of 8: %d refused, want at least 4", overloaded)
	}
	// Cancel every exchange: the listener's slots come back.
	for _, cl := range cls {
		for seq := uint32(1); seq <= 4; seq++ {
			send(cl, codec.Frame{Cmd: 31, Seq: seq, Flags: codec.FlagCancel})
		}
	}
	testkit.Within(t, 5*time.Second, "the listener's slots released", func() bool {
		r, ok := cls[0].call(codec.Frame{Cmd: cmdEcho, Seq: 101, Body: []byte("v")})
		return ok && r.Result == 0
	})
}

// TestAttackDrainTimeoutAnswersInFlight: when a drain times out, the
// calls still in flight (here a gRPC upstream that takes 5s) are answered
// result 7 "server shutting down" before their connection closes; before,
// the connection was closed with no answer.
func TestAttackDrainTimeoutAnswersInFlight(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	ch := cl.start(codec.Frame{Cmd: cmdSleep, Body: []byte("5s")})
	testkit.Within(t, 5*time.Second, "the call in flight", func() bool {
		return testutil.ToFloat64(e.metrics.InFlight.WithLabelValues("priv")) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with a call held for 5s reported a clean drain")
	}
	r, ok := wait(t, ch)
	if !ok || r.Result != codec.ResultUnavailable || errMsg(r) != "server shutting down" {
		t.Fatalf("call in flight at the drain timeout: ok=%v result=%d %q", ok, r.Result, errMsg(r))
	}
	_ = cl.waitClosed() // and the connection closes
}

// TestAttackBadMACFlood: a client pipelining 20,000 frames whose MAC is
// wrong gets result 3 for each and keeps its connection (no per-frame
// log line above Debug), while a client with the right key is answered
// throughout.
func TestAttackBadMACFlood(t *testing.T) {
	e := newEnv(t, envOpts{auth: authPolicy(30*time.Second, 0)})
	const n = 20_000
	now := uint64(time.Now().UnixMilli())
	var wire []byte
	for i := range n {
		b := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: uint32(i + 1), Body: []byte("forged")}, 7, now, uint64(1_000_000+i))
		b[len(b)-2] ^= 0xff // the body: the MAC no longer matches
		wire = append(wire, b...)
	}
	flood := make(chan map[uint16]int, 1)
	go func() { flood <- testkit.Flood(t, e.addr, wire, n) }()
	good := e.dial()
	for i := range 200 {
		f := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: uint32(i + 1), Body: []byte("real")}, 7, uint64(time.Now().UnixMilli()), uint64(i+1))
		ch := good.expect(uint32(i + 1))
		good.write(f)
		r, ok := wait(t, ch)
		if !ok || r.Result != 0 || string(r.Body) != "real" {
			t.Fatalf("signed call %d during the flood: ok=%v result=%d %s", i, ok, r.Result, errMsg(r))
		}
	}
	got := testkit.Receive(t, flood, 60*time.Second, "the forged frames' answers")
	if got[codec.ResultUnauthenticated] != n {
		t.Fatalf("forged frames answered %v, want %d × result 3", got, n)
	}
}
