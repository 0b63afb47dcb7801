package privconn_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var mgpc = mgp.New(0)

// rawServer accepts one connection and hands it to fn.
func rawServer(t *testing.T, fn func(nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		fn(nc)
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// frameServer is rawServer reading the connection's frames: fn gets each
// one (valid until it returns) and returns false to stop; the connection
// closes then, or when the client closes it.
func frameServer(t *testing.T, fn func(nc net.Conn, f *codec.Frame) bool) string {
	t.Helper()
	return rawServer(t, func(nc net.Conn) {
		r := codec.NewReader(nc, mgpc, 1024)
		var f codec.Frame
		for r.ReadFrame(&f) == nil && fn(nc, &f) {
		}
	})
}

// dropAfter is a server that reads n requests, answers none and closes
// the connection.
func dropAfter(t *testing.T, n int) string {
	t.Helper()
	return frameServer(t, func(net.Conn, *codec.Frame) bool { n--; return n > 0 })
}

func writeFrame(t *testing.T, nc net.Conn, f *codec.Frame) {
	b, err := mgpc.Append(nil, f)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := nc.Write(b); err != nil {
		t.Log("write:", err)
	}
}

func startLegacy(t *testing.T, o legacy.ServerOptions) *legacy.Server {
	t.Helper()
	s, _ := testkit.Legacy(t, nil, nil, o)
	return s
}

func TestRoundTripOwnSeqAndOwnedReply(t *testing.T) {
	s := startLegacy(t, legacy.ServerOptions{EchoExt: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, s.Addr().String(), mgpc, privconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	seen := map[uint32]bool{}
	for i := range 50 {
		body := []byte("hello-" + strconv.Itoa(i))
		req := codec.Frame{Cmd: legacy.CmdEcho, Seq: 0xdeadbeef, UIN: uint64(i), Body: body,
			Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc")}, {Key: 0x8001, Value: []byte{1, 2}}}}
		resp, err := cn.Do(ctx, &req)
		if err != nil {
			t.Fatal(err)
		}
		if req.Seq == 0xdeadbeef || seen[req.Seq] {
			t.Fatalf("conn reused caller/duplicate seq %d", req.Seq)
		}
		seen[req.Seq] = true
		if resp.Seq != req.Seq || string(resp.Body) != string(body) || resp.UIN != uint64(i) || !resp.Flags.Has(codec.FlagResponse) {
			t.Fatalf("bad reply %+v", resp)
		}
		if v, _ := resp.ExtValue(codec.ExtCaller); string(v) != "svc" {
			t.Fatalf("caller ext %q", v)
		}
		if v, _ := resp.ExtValue(0x8001); string(v) != "\x01\x02" {
			t.Fatalf("app ext %q", v)
		}
		// The reply must not alias the caller's body.
		body[0] = 'X'
		if resp.Body[0] != 'h' {
			t.Fatal("reply aliases the request buffer")
		}
	}
}

func TestUnknownSeqAndLateReplyCounted(t *testing.T) {
	got := make(chan codec.Frame, 4)
	release := make(chan struct{})
	addr := rawServer(t, func(nc net.Conn) {
		r := codec.NewReader(nc, mgpc, 1024)
		var f codec.Frame
		// Request 1: answer twice (second is a duplicate) plus an unknown seq.
		if r.ReadFrame(&f) != nil {
			return
		}
		got <- f
		resp := codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse, Body: []byte("one")}
		writeFrame(t, nc, &resp)
		writeFrame(t, nc, &resp)
		unk := codec.Frame{Seq: f.Seq + 1000, Flags: codec.FlagResponse}
		writeFrame(t, nc, &unk)
		// Request 2: answer only after the client gave up.
		if r.ReadFrame(&f) != nil {
			return
		}
		seq := f.Seq
		<-release
		late := codec.Frame{Seq: seq, Flags: codec.FlagResponse}
		writeFrame(t, nc, &late)
		// Request 3: normal.
		if r.ReadFrame(&f) != nil {
			return
		}
		resp = codec.Frame{Seq: f.Seq, Flags: codec.FlagResponse, Body: []byte("three")}
		writeFrame(t, nc, &resp)
		r.ReadFrame(&f) // until the client closes
	})
	var lateHook, unknownHook sync.WaitGroup
	lateHook.Add(1)
	unknownHook.Add(2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{
		OnLate: lateHook.Done, OnUnknownSeq: unknownHook.Done,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	resp, err := cn.Do(ctx, &codec.Frame{Cmd: 1})
	if err != nil || string(resp.Body) != "one" {
		t.Fatalf("first: %v %v", resp, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 30*time.Millisecond)
	_, err = cn.Do(short, &codec.Frame{Cmd: 2})
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline, got %v", err)
	}
	if n := cn.InFlight(); n != 0 {
		t.Fatalf("slot not freed on cancel: in flight %d", n)
	}
	close(release)
	resp, err = cn.Do(ctx, &codec.Frame{Cmd: 3})
	if err != nil || string(resp.Body) != "three" {
		t.Fatalf("third: %v %v", resp, err)
	}
	lateHook.Wait()
	unknownHook.Wait()
	st := cn.Stats()
	if st.Late != 1 || st.UnknownSeq != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConnFailureFailsPending(t *testing.T) {
	addr := dropAfter(t, 3) // three requests pending: drop the connection
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	doAllClosed(t, ctx, cn, 3, codec.Frame{Cmd: 1})
	<-cn.Done()
	if _, err := cn.Do(ctx, &codec.Frame{Cmd: 1}); !errors.Is(err, privconn.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestHeartbeatAndLiveness(t *testing.T) {
	// A live server answers heartbeats: the idle conn stays up.
	s := startLegacy(t, legacy.ServerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, s.Addr().String(), mgpc, privconn.Options{Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	for st := cn.Stats(); st.HeartbeatsSent < 3 || st.HeartbeatsRecv < 3; st = cn.Stats() {
		if ctx.Err() != nil {
			t.Fatalf("no heartbeats: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-cn.Done():
		t.Fatalf("live conn closed: %v", cn.Err())
	default:
	}

	// A silent server: the liveness timeout closes the conn.
	addr := rawServer(t, func(nc net.Conn) {
		buf := make([]byte, 1024)
		for {
			if _, err := nc.Read(buf); err != nil {
				return
			}
		}
	})
	dead, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{Heartbeat: 20 * time.Millisecond, Liveness: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	_, err = dead.Do(ctx, &codec.Frame{Cmd: 1})
	if !errors.Is(err, privconn.ErrLivenessTimeout) || !errors.Is(err, privconn.ErrClosed) {
		t.Fatalf("want liveness timeout, got %v", err)
	}
}

func TestInFlightCapAndOneway(t *testing.T) {
	s := startLegacy(t, legacy.ServerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, s.Addr().String(), mgpc, privconn.Options{MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	slow := []byte{0, 0, 0, 200}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cn.Do(ctx, &codec.Frame{Cmd: legacy.CmdSlow, Body: slow}); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Second)
	for cn.InFlight() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := cn.Do(ctx, &codec.Frame{Cmd: legacy.CmdEcho}); !errors.Is(err, privconn.ErrTooManyInFlight) {
		t.Fatalf("want ErrTooManyInFlight, got %v", err)
	}
	wg.Wait()
	if err := cn.Send(ctx, &codec.Frame{Cmd: legacy.CmdEcho, Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cn.Do(ctx, &codec.Frame{Cmd: legacy.CmdEcho}); err != nil {
		t.Fatal(err)
	}
	// The server counts a reply after writing it: wait for the counters.
	for dl := time.Now().Add(2 * time.Second); (s.Stats().Oneway < 1 || s.Stats().Replies < 3) && time.Now().Before(dl); {
		time.Sleep(time.Millisecond)
	}
	if st := s.Stats(); st.Oneway != 1 || st.Replies != 3 {
		t.Fatalf("server stats %+v", st)
	}
	if st := cn.Stats(); st.UnknownSeq != 0 {
		t.Fatalf("oneway answered: %+v", st)
	}
}

func TestConcurrentCorrelation(t *testing.T) {
	s := startLegacy(t, legacy.ServerOptions{Jitter: 2 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := legacy.RunLoad(ctx, legacy.LoadOptions{Addr: s.Addr().String(), Conns: 2, Concurrency: 64, Requests: 20000, Size: 64, Cmd: legacy.CmdUppercase})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.Count != 20000 || r.Errors != 0 || r.Mismatches != 0 || r.NonOK != 0 {
		t.Fatalf("load: %v", r)
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	_, addr := testkit.Legacy(b, nil, nil, legacy.ServerOptions{})
	ctx := context.Background()
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer cn.Close()
	body := make([]byte, 128)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		f := codec.Frame{Cmd: legacy.CmdEcho, Body: body}
		for b.Loop() {
			if _, err := cn.Do(ctx, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			f := codec.Frame{Cmd: legacy.CmdEcho, Body: body}
			for pb.Next() {
				if _, err := cn.Do(ctx, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// A peer that neither reads nor answers: the flusher blocked in Write is
// released by the liveness timeout, and every caller gets ErrClosed.
// doAllClosed sends a copy of req n times concurrently on cn (Do assigns
// each its seq): every call must end with ErrClosed (the connection dies
// under them).
func doAllClosed(t *testing.T, ctx context.Context, cn *privconn.Conn, n int, req codec.Frame) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := req
			_, err := cn.Do(ctx, &f)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, privconn.ErrClosed) {
			t.Fatalf("want ErrClosed, got %v", err)
		}
	}
}

func TestStuckPeerReleasedByLiveness(t *testing.T) {
	stop := make(chan struct{})
	addr := rawServer(t, func(nc net.Conn) { <-stop })
	defer close(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{Heartbeat: 20 * time.Millisecond, Liveness: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	body := make([]byte, 256<<10) // 16 of them fit privconn.MaxBacklog
	t0 := time.Now()
	doAllClosed(t, ctx, cn, 16, codec.Frame{Cmd: 1, Body: body})
	if el := time.Since(t0); el > 3*time.Second {
		t.Fatalf("released after %v", el)
	}
}

// TestPushDeliveredToOnPush: a PUSH frame the server sends between replies
// reaches Options.OnPush (it was dropped before) and the request on the
// same connection is still answered.
func TestPushDeliveredToOnPush(t *testing.T) {
	addr := rawServer(t, func(nc net.Conn) {
		r := codec.NewReader(nc, mgpc, 1024)
		var f codec.Frame
		if r.ReadFrame(&f) != nil {
			return
		}
		writeFrame(t, nc, &codec.Frame{Cmd: 77, Seq: 5, UIN: 42, Flags: codec.FlagPush, Body: []byte("event")})
		writeFrame(t, nc, &codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse, Body: []byte("ok")})
		r.ReadFrame(&f) // until the client closes
	})
	pushes := make(chan codec.Frame, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{Heartbeat: -1, OnPush: func(f *codec.Frame) { pushes <- *privconn.Clone(f) }})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	resp, err := cn.Do(ctx, &codec.Frame{Cmd: 1, Body: []byte("q")})
	if err != nil || string(resp.Body) != "ok" {
		t.Fatalf("reply: %v %v", resp, err)
	}
	select {
	case p := <-pushes:
		if p.Cmd != 77 || p.UIN != 42 || string(p.Body) != "event" {
			t.Fatalf("push %+v", p)
		}
	case <-ctx.Done():
		t.Fatal("push not delivered")
	}
}
