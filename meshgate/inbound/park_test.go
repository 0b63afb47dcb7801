//go:build linux

package inbound

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
)

// connGoroutines counts the goroutines running a conn method of this
// package (a reading goroutine or an idle wait).
func connGoroutines() int { return testkit.Goroutines("inbound.(*conn).") }

// onlyConn is the server's one connection.
func (e *env) onlyConn(t *testing.T) *conn {
	t.Helper()
	var c *conn
	testkit.Within(t, 2*time.Second, "one connection", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		for sc := range e.srv.conns {
			c = sc
		}
		return len(e.srv.conns) == 1
	})
	return c
}

// parked reports whether c is in its listener's parker.
func parked(c *conn) bool { return c.s.park.Holds(&c.pk) }

// TestParkedHoldsNoGoroutine: a plain-TCP MGP connection idle for
// IdleGrace is held by the listener's parker without any goroutine of
// its own; its next request (and a heartbeat) wakes it and is served,
// several times over, and it parks again; a client that then goes away
// is noticed while parked (the connection is removed).
func TestParkedHoldsNoGoroutine(t *testing.T) {
	e := newEnv(t, envOpts{grace: 20 * time.Millisecond})
	cl := e.dial()
	for i := range 3 {
		body := fmt.Sprintf("call %d", i)
		if r, ok := cl.call(codecFrame(cmdEcho, 0, body)); !ok || string(r.Body) != body {
			t.Fatalf("call %d: ok=%v %+v", i, ok, r)
		}
		c := e.onlyConn(t)
		testkit.Within(t, 2*time.Second, "connection parked without a goroutine", func() bool {
			return parked(c) && connGoroutines() == 0
		})
	}
	c := e.onlyConn(t)
	hb := cl.start(codec.Frame{Cmd: 1, Flags: codec.FlagHeartbeat})
	if r, ok := wait(t, hb); !ok || r.Flags&(codec.FlagHeartbeat|codec.FlagResponse) != codec.FlagHeartbeat|codec.FlagResponse {
		t.Fatalf("heartbeat on a parked connection: ok=%v %+v", ok, r)
	}
	testkit.Within(t, 2*time.Second, "parked again after the heartbeat", func() bool {
		return parked(c) && connGoroutines() == 0
	})
	_ = cl.nc.Close()
	testkit.Within(t, 2*time.Second, "parked connection removed after the client closed", func() bool {
		return e.srv.Conns() == 0 && !parked(c) && e.srv.park.Len() == 0 && connGoroutines() == 0
	})
}

// TestParkedIdleTimeout: the listener's idle_timeout closes a parked
// connection (counted as idle_timeout), not much later than it closes a
// waiting one (the deadline with its slack, idle + idle/8).
func TestParkedIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	e := newEnv(t, envOpts{grace: 20 * time.Millisecond, lim: Limits{IdleTimeout: idle}})
	cl := e.dial()
	if _, ok := cl.call(codecFrame(cmdEcho, 0, "x")); !ok {
		t.Fatal("no reply")
	}
	last := time.Now()
	c := e.onlyConn(t)
	testkit.Within(t, 2*time.Second, "parked", func() bool { return parked(c) })
	_ = cl.waitClosed()
	if d := time.Since(last); d < idle || d > idle+idle/8+time.Second {
		t.Fatalf("closed %v after the last reply, want about %v", d, idle)
	}
	testkit.Within(t, 2*time.Second, "connection removed", func() bool {
		return e.srv.Conns() == 0 && e.srv.park.Len() == 0 && connGoroutines() == 0
	})
	if v := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("priv", "idle_timeout")); v != 1 {
		t.Fatalf("idle_timeout counted %v times, want 1", v)
	}
}

// TestParkedDrainAndClose: Shutdown ends parked connections after the
// quiet period (not at their idle timeout, an hour away) and Close ends
// parked connections at once; no goroutine stays behind (goleak in
// TestMain, and the parker's own goroutine ends with Close).
func TestParkedDrainAndClose(t *testing.T) {
	for _, drain := range []bool{true, false} {
		t.Run(fmt.Sprintf("drain=%v", drain), func(t *testing.T) {
			e := newEnv(t, envOpts{grace: 20 * time.Millisecond, lim: Limits{IdleTimeout: time.Hour}})
			cls := make([]*client, 5)
			for i := range cls {
				cls[i] = e.dial()
				if _, ok := cls[i].call(codecFrame(cmdEcho, 0, "x")); !ok {
					t.Fatal("no reply")
				}
			}
			testkit.Within(t, 2*time.Second, "all parked", func() bool { return e.srv.park.Len() == len(cls) && connGoroutines() == 0 })
			if drain {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := e.srv.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v (parked connections not drained)", err)
				}
			} else {
				closed := make(chan struct{})
				go func() { e.srv.Close(); close(closed) }()
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
					t.Fatal("Close did not return: a parked connection was not ended")
				}
			}
			for _, cl := range cls {
				_ = cl.waitClosed()
			}
			if n := e.srv.Conns(); n != 0 || e.srv.park.Len() != 0 || connGoroutines() != 0 {
				t.Fatalf("after the stop: %d connections, %d parked, %d goroutines", n, e.srv.park.Len(), connGoroutines())
			}
		})
	}
}

// TestPushToParkedConn: a push to a parked connection's uin is delivered
// (pushes are written by the pusher's side, not the reader) and the
// connection stays parked and serves its next request.
func TestPushToParkedConn(t *testing.T) {
	e := newEnv(t, envOpts{grace: 20 * time.Millisecond})
	e.srv.SetPush(&config.ListenerPush{})
	cl := e.dial()
	if r, ok := cl.call(codec.Frame{Cmd: cmdEcho, UIN: 42, Body: []byte("hi")}); !ok || r.Result != 0 {
		t.Fatalf("echo: %+v", r)
	}
	c := e.onlyConn(t)
	for i := range 3 {
		testkit.Within(t, 2*time.Second, "parked", func() bool { return parked(c) && connGoroutines() == 0 })
		body := fmt.Sprintf("event %d", i)
		if n, err := e.srv.Registry().Deliver(42, &codec.Frame{Cmd: 900, UIN: 42, Seq: uint32(i + 1), Flags: codec.FlagPush, Body: []byte(body)}); n != 1 || err != nil {
			t.Fatalf("deliver: %d %v", n, err)
		}
		if p := nextPush(t, cl); p.Cmd != 900 || string(p.Body) != body {
			t.Fatalf("push %+v", p)
		}
	}
	if r, ok := cl.call(codecFrame(cmdEcho, 0, "after")); !ok || string(r.Body) != "after" {
		t.Fatalf("request after the pushes: ok=%v %+v", ok, r)
	}
}

// TestHalfFrameNotParked: a client that sends half a frame and goes
// silent for longer than the grace keeps its bytes: the connection holds
// them in its reader (the frame is read under the read timeout, never
// parked), and the rest of the frame completes it.
func TestHalfFrameNotParked(t *testing.T) {
	const grace = 20 * time.Millisecond
	e := newEnv(t, envOpts{grace: grace, lim: Limits{ReadTimeout: 5 * time.Second}})
	cl := e.dial()
	if _, ok := cl.call(codecFrame(cmdEcho, 0, "x")); !ok {
		t.Fatal("no reply")
	}
	c := e.onlyConn(t)
	testkit.Within(t, 2*time.Second, "parked", func() bool { return parked(c) })
	f := codec.Frame{Cmd: cmdEcho, Seq: 77, Body: []byte("half then the rest")}
	b, _ := e.codec.Append(nil, &f)
	ch := cl.expect(f.Seq)
	cl.write(b[:len(b)/2])
	testkit.Within(t, 2*time.Second, "the half frame read into a reader", func() bool { return e.srv.held.Load() == 1 && !parked(c) })
	time.Sleep(5 * grace) // silent for longer than the grace, mid-frame
	if parked(c) {
		t.Fatal("parked with half a frame in its reader")
	}
	cl.write(b[len(b)/2:])
	if r, ok := wait(t, ch); !ok || string(r.Body) != string(f.Body) {
		t.Fatalf("completed frame: ok=%v %+v", ok, r)
	}
	testkit.Within(t, 2*time.Second, "parked again", func() bool { return parked(c) && e.srv.held.Load() == 0 })
}

// TestParkWakeConcurrent: many connections park and wake at once, with
// pauses around the grace (requests and heartbeats), under -race: every
// reply arrives.
func TestParkWakeConcurrent(t *testing.T) {
	const grace = 5 * time.Millisecond
	e := newEnv(t, envOpts{grace: grace})
	const conns, rounds = 40, 15
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		cl := e.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				// pauses of 0 to 3 graces: some park, some wake on the way
				time.Sleep(time.Duration((i+r)%4) * grace)
				f := codecFrame(cmdEcho, 0, fmt.Sprintf("%d/%d", i, r))
				if r%5 == 4 {
					f = codec.Frame{Cmd: 1, Flags: codec.FlagHeartbeat}
				}
				got, ok, timedOut := tryWait(cl.start(f))
				if !ok || timedOut || (f.Flags == 0 && string(got.Body) != string(f.Body)) {
					errs <- fmt.Errorf("conn %d round %d: ok=%v timedOut=%v %+v", i, r, ok, timedOut, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	testkit.Within(t, 5*time.Second, "all parked", func() bool { return e.srv.park.Len() == conns && connGoroutines() == 0 })
}

// BenchmarkHeartbeatAfterPark: one heartbeat (answered by MeshGate
// itself, so that the wake-up is most of the cost) after a 30 ms pause,
// on a connection that is parked (IdleGrace 1 ms, the park awaited
// outside the timer) or waiting on its idle goroutine (parking off; the
// pause is past the 20 ms linger, so that goroutine is the small fresh
// one of an idle connection). The difference is the wake-up's cost.
func BenchmarkHeartbeatAfterPark(b *testing.B) {
	b.Run("parked", func(b *testing.B) { benchHeartbeatAfterPause(b, time.Millisecond) })
	b.Run("waiting", func(b *testing.B) { benchHeartbeatAfterPause(b, -1) })
}

func benchHeartbeatAfterPause(b *testing.B, grace time.Duration) {
	e := newEnvO(b, envOpts{grace: grace})
	c := dialRaw(b, e.addr)
	defer c.Close()
	hb, _ := e.codec.Append(nil, &codec.Frame{Cmd: 1, Seq: 1, Flags: codec.FlagHeartbeat})
	rd := codec.NewReader(c, e.codec, 256)
	var f codec.Frame
	beat := func() {
		if _, err := c.Write(hb); err != nil {
			b.Fatal(err)
		}
		if err := rd.ReadFrame(&f); err != nil || f.Flags&codec.FlagResponse == 0 {
			b.Fatalf("heartbeat reply %v %+v", err, f)
		}
	}
	beat()
	var sc *conn
	e.srv.mu.Lock()
	for k := range e.srv.conns {
		sc = k
	}
	e.srv.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		time.Sleep(30 * time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for grace > 0 && !parked(sc) {
			if time.Now().After(deadline) {
				b.Fatal("the connection did not park")
			}
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
		beat()
	}
}

// TestParkedCountTowardMaxConnections: parked connections hold their
// slots of max_connections (one past the cap is refused), and a parked
// connection whose client leaves frees its slot for a new one.
func TestParkedCountTowardMaxConnections(t *testing.T) {
	e := newEnv(t, envOpts{grace: 20 * time.Millisecond, maxConns: 2})
	var cls []*client
	for range 2 {
		cl := e.dial()
		if _, ok := cl.call(codecFrame(cmdEcho, 0, "x")); !ok {
			t.Fatal("no reply within the cap")
		}
		cls = append(cls, cl)
	}
	testkit.Within(t, 2*time.Second, "both parked", func() bool { return e.srv.park.Len() == 2 })
	nc, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Fatalf("connection past the cap: read %v, want it closed by the server", err)
	}
	_ = nc.Close()
	_ = cls[0].nc.Close()
	testkit.Within(t, 2*time.Second, "the parked connection's slot freed", func() bool { return e.srv.Conns() == 1 && e.srv.park.Len() == 1 })
	cl := e.dial()
	if r, ok := cl.call(codecFrame(cmdEcho, 0, "freed")); !ok || string(r.Body) != "freed" {
		t.Fatalf("new connection in the freed slot: ok=%v %+v", ok, r)
	}
}
