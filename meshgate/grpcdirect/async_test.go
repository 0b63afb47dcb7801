package grpcdirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// asyncResult is what an async call's callback saw.
type asyncResult struct {
	err  error
	body []byte
}

// startWait starts an async call and returns the channel its
// completion arrives on.
func startWait(t *testing.T, e *Endpoint, ctx context.Context, method string, dl time.Time, req []byte, opts ...grpc.CallOption) (Ticket, <-chan asyncResult) {
	t.Helper()
	ch := make(chan asyncResult, 2)
	resp := new(rawcodec.Message)
	done := func(err error) {
		ch <- asyncResult{err, bytes.Clone(resp.Bytes())}
		resp.Free()
	}
	return e.Start(ctx, method, dl, req, resp, done, opts...), ch
}

// warm connects e (an unknown method answers too): calls started after
// it take the asynchronous path.
func warm(t *testing.T, e *Endpoint) {
	t.Helper()
	var resp rawcodec.Message
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Nope", []byte{}, &resp); status.Code(err) != codes.Unimplemented {
		t.Fatalf("warm-up call: %v", err)
	}
}

func waitResult(t *testing.T, ch <-chan asyncResult) asyncResult {
	t.Helper()
	return testkit.Receive(t, ch, 5*time.Second, "async call never completed")
}

// TestStartRoundTrip: async calls give the reply, the metadata both ways
// and the statuses exactly as Invoke does, completed by the connection's
// reader with nobody waiting.
func TestStartRoundTrip(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{
		"Echo": echo,
		"Meta": func(ctx context.Context, _ []byte) ([]byte, error) {
			in, _ := metadata.FromIncomingContext(ctx)
			_ = grpc.SetHeader(ctx, metadata.Pairs("h-plain", in.Get("x-plain")[0]))
			_ = grpc.SetTrailer(ctx, metadata.Pairs("t-bin", "\x00\xff"))
			return []byte("meta"), nil
		},
		"Fail": func(ctx context.Context, req []byte) ([]byte, error) {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("why", "test"))
			st, _ := status.New(codes.Code(req[0]), "bad: 100%").WithDetails(wrapperspb.String("detail"))
			return nil, st.Err()
		},
	})
	e := newEP(t, Config{Addr: b.addr})
	for i := range 20 {
		req := bytes.Repeat([]byte{byte(i)}, i*97)
		_, ch := startWait(t, e, context.Background(), "/"+svc+"/Echo", time.Now().Add(5*time.Second), req)
		if r := waitResult(t, ch); r.err != nil || !bytes.Equal(r.body, req) {
			t.Fatalf("call %d: %d bytes, %v", i, len(r.body), r.err)
		}
	}
	var hdr, trl metadata.MD
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-plain", "v1"))
	_, ch := startWait(t, e, ctx, "/"+svc+"/Meta", time.Time{}, nil, grpc.Header(&hdr), grpc.Trailer(&trl))
	if r := waitResult(t, ch); r.err != nil || string(r.body) != "meta" {
		t.Fatalf("meta: %q %v", r.body, r.err)
	}
	if hdr.Get("h-plain")[0] != "v1" || trl.Get("t-bin")[0] != "\x00\xff" {
		t.Fatalf("header %v trailer %v", hdr, trl)
	}
	for _, code := range []codes.Code{codes.NotFound, codes.Internal, codes.Unavailable} {
		var t1, t2 metadata.MD
		var r1 rawcodec.Message
		want := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Fail", []byte{byte(code)}, &r1, grpc.Trailer(&t1))
		_, ch := startWait(t, e, context.Background(), "/"+svc+"/Fail", time.Now().Add(5*time.Second), []byte{byte(code)}, grpc.Trailer(&t2))
		got := waitResult(t, ch).err
		if !proto.Equal(status.Convert(got).Proto(), status.Convert(want).Proto()) || t2.Get("why")[0] != "test" || len(t1) != len(t2) {
			t.Fatalf("code %v: got %v (trailer %v), Invoke %v (trailer %v)", code, got, t2, want, t1)
		}
	}
}

// TestStartNotConnected: a call that finds no connection takes the
// waiting path and fails as Invoke does; one past its deadline fails
// DeadlineExceeded at once, before Start returns.
func TestStartNotConnected(t *testing.T) {
	e := newEP(t, Config{Addr: "127.0.0.1:1"})
	var resp rawcodec.Message
	want := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("x"), &resp)
	_, ch := startWait(t, e, context.Background(), "/"+svc+"/Echo", time.Now().Add(5*time.Second), []byte("x"))
	if r := waitResult(t, ch); status.Code(r.err) != codes.Unavailable || status.Convert(r.err).Message() != status.Convert(want).Message() {
		t.Fatalf("got %v, Invoke %v", r.err, want)
	}
	_, ch = startWait(t, e, context.Background(), "/"+svc+"/Echo", time.Now().Add(-time.Millisecond), []byte("x"))
	select {
	case r := <-ch:
		if status.Code(r.err) != codes.DeadlineExceeded {
			t.Fatalf("expired: got %v", r.err)
		}
	default:
		t.Fatal("an expired call did not complete before Start returned")
	}
}

// hangBackend's Hang handler ignores its context (so the server never
// ends the stream on its own) until the test ends; started reports each
// call.
func hangBackend(t *testing.T) (*backend, chan struct{}) {
	started, release := make(chan struct{}, 64), make(chan struct{})
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo, "Hang": func(ctx context.Context, _ []byte) ([]byte, error) {
		started <- struct{}{}
		<-release
		return nil, nil
	}})
	t.Cleanup(func() { close(release) })
	return b, started
}

// TestStartDeadline: the connection's deadline timer ends an async call
// whose server never answers with DeadlineExceeded, several calls with
// different deadlines each at its own, and the connection goes on.
func TestStartDeadline(t *testing.T) {
	b, _ := hangBackend(t)
	e := newEP(t, Config{Addr: b.addr})
	warm(t, e)
	start := time.Now()
	var chs []<-chan asyncResult
	for _, d := range []time.Duration{300, 100, 200} {
		_, ch := startWait(t, e, context.Background(), "/"+svc+"/Hang", time.Now().Add(d*time.Millisecond), []byte("x"))
		chs = append(chs, ch)
	}
	var order []int
	for range chs {
		select {
		case r := <-chs[0]:
			order = append(order, 300)
			checkDL(t, r)
		case r := <-chs[1]:
			order = append(order, 100)
			checkDL(t, r)
		case r := <-chs[2]:
			order = append(order, 200)
			checkDL(t, r)
		case <-time.After(5 * time.Second):
			t.Fatal("expired calls never completed")
		}
	}
	if order[0] != 100 || order[1] != 200 || order[2] != 300 {
		t.Fatalf("completed in order %v", order)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("last completed after %v", d)
	}
	_, ch := startWait(t, e, context.Background(), "/"+svc+"/Echo", time.Time{}, []byte("after"))
	if r := waitResult(t, ch); r.err != nil || string(r.body) != "after" {
		t.Fatalf("call after the expiries: %q %v", r.body, r.err)
	}
}

func checkDL(t *testing.T, r asyncResult) {
	t.Helper()
	if status.Code(r.err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DeadlineExceeded", r.err)
	}
}

// TestStartCancel: Ticket.Cancel completes the call with Canceled and
// resets its stream (the server's handler sees the cancellation); a
// second Cancel, or one after completion, does nothing.
func TestStartCancel(t *testing.T) {
	b, started, ended := stallBackend(t)
	e := newEP(t, Config{Addr: b.addr})
	warm(t, e)
	tk, ch := startWait(t, e, context.Background(), "/"+svc+"/Stall", time.Time{}, []byte("x"))
	testkit.Receive(t, started, 5*time.Second, "call never reached the server")
	tk.Cancel()
	if r := waitResult(t, ch); status.Code(r.err) != codes.Canceled {
		t.Fatalf("got %v, want Canceled", r.err)
	}
	tk.Cancel()
	err := testkit.Receive(t, ended, 5*time.Second, "server never saw the cancellation")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("server handler ended with %v", err)
	}
	select {
	case r := <-ch:
		t.Fatalf("second completion %v", r.err)
	default:
	}
}

// TestStartConnectionLost: a server that goes away completes every
// pending async call once with Unavailable.
func TestStartConnectionLost(t *testing.T) {
	b, started := hangBackend(t)
	e := newEP(t, Config{Addr: b.addr})
	warm(t, e)
	var chs []<-chan asyncResult
	for range 5 {
		_, ch := startWait(t, e, context.Background(), "/"+svc+"/Hang", time.Time{}, []byte("x"))
		chs = append(chs, ch)
	}
	for range 5 {
		testkit.Receive(t, started, 5*time.Second, "calls never reached the server")
	}
	go b.srv.Stop() // closes the connections (Stop waits for nothing of ours)
	for i, ch := range chs {
		if r := waitResult(t, ch); status.Code(r.err) != codes.Unavailable {
			t.Fatalf("call %d: got %v, want Unavailable", i, r.err)
		}
	}
	for i, ch := range chs {
		select {
		case r := <-ch:
			t.Fatalf("call %d completed twice: %v", i, r.err)
		default:
		}
	}
}

// TestStartMixedWithInvoke: async calls complete while synchronous
// callers come and go on the same connection (the read role passes
// between callers and the background goroutine; an async call is never
// left without a reader).
func TestStartMixedWithInvoke(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo})
	e := newEP(t, Config{Addr: b.addr})
	warm(t, e)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				req := []byte{byte(g), byte(i)}
				if g%2 == 0 {
					var resp rawcodec.Message
					if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", req, &resp); err != nil || !bytes.Equal(resp.Bytes(), req) {
						t.Errorf("sync %d/%d: %v", g, i, err)
						return
					}
					resp.Free()
					continue
				}
				_, ch := startWait(t, e, context.Background(), "/"+svc+"/Echo", time.Now().Add(5*time.Second), req)
				select {
				case r := <-ch:
					if r.err != nil || !bytes.Equal(r.body, req) {
						t.Errorf("async %d/%d: %v", g, i, r.err)
						return
					}
				case <-time.After(5 * time.Second):
					t.Errorf("async %d/%d never completed", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestStartCompletesExactlyOnce: async calls that race their replies,
// their deadlines, their cancellation and the server going away and
// coming back each complete exactly once, with their own reply when OK.
func TestStartCompletesExactlyOnce(t *testing.T) {
	handler := func(ctx context.Context, b []byte) ([]byte, error) {
		if d := time.Duration(b[0]) * 50 * time.Microsecond; d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return b, nil
	}
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": handler})
	e := newEP(t, Config{Addr: b.addr, Conns: 2})
	_, ch := startWait(t, e, context.Background(), "/"+svc+"/Echo", time.Time{}, []byte{0}) // connected
	waitResult(t, ch)

	var started, completed, bad, ok atomic.Int64
	var pending sync.Map // call → what it was, until completed (reported on failure)
	var wg sync.WaitGroup
	restarted := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 300 {
				if g == 0 && i == 150 {
					b.srv.Stop()
					startBackend(t, b.addr, map[string]demo.Handler{"Echo": handler})
					close(restarted)
				}
				req := []byte{byte(rng.IntN(40)), byte(g), byte(i), byte(i >> 8)}
				resp := new(rawcodec.Message)
				var n atomic.Int32
				done := func(err error) {
					if n.Add(1) != 1 {
						bad.Add(1)
						t.Errorf("call %d/%d completed twice", g, i)
					}
					if err == nil {
						ok.Add(1)
					}
					if err == nil && !bytes.Equal(resp.Bytes(), req) {
						bad.Add(1)
						t.Errorf("call %d/%d: reply %v, want %v", g, i, resp.Bytes(), req)
					}
					resp.Free()
					pending.Delete([2]int{g, i})
					completed.Add(1)
				}
				dl := time.Time{}
				if rng.IntN(2) == 0 {
					dl = time.Now().Add(time.Duration(rng.IntN(2000)) * time.Microsecond)
				}
				started.Add(1)
				pending.Store([2]int{g, i}, fmt.Sprintf("deadline %v", !dl.IsZero()))
				tk := e.Start(context.Background(), "/"+svc+"/Echo", dl, req, resp, done)
				if _, ok := pending.Load([2]int{g, i}); ok {
					pending.Store([2]int{g, i}, fmt.Sprintf("deadline %v, async %v", !dl.IsZero(), tk != Ticket{}))
				}
				if rng.IntN(4) == 0 {
					if rng.IntN(2) == 0 {
						time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
					}
					tk.Cancel()
				}
			}
		})
	}
	wg.Wait()
	<-restarted
	ctx := ctxT(t, 10*time.Second)
	for completed.Load() != started.Load() && ctx.Err() == nil {
		time.Sleep(time.Millisecond) // polling for the last completions
	}
	if c, s := completed.Load(), started.Load(); c != s || bad.Load() != 0 || ok.Load() == 0 || ok.Load() == s {
		n := 0
		pending.Range(func(k, v any) bool {
			t.Logf("never completed: call %v, %v", k, v)
			n++
			return n < 10
		})
		buf := make([]byte, 64<<10)
		t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		t.Fatalf("%d started, %d completed, %d bad, %d OK", s, c, bad.Load(), ok.Load())
	}

}

// TestAsyncPingAckFlushed: a server PING read by the background goroutine
// while async calls are in use is acknowledged although no request
// follows to carry the deferred ack (the connection's ack timer).
func TestAsyncPingAckFlushed(t *testing.T) {
	acked := make(chan uint32, 4)
	addr := rawH2Server(t, func(fr *http2.Framer) {
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() && fr.WriteSettingsAck() != nil {
					return
				}
			case *http2.PingFrame:
				if f.IsAck() {
					acked <- uint32(f.Data[0])
				}
			case *http2.DataFrame:
				if !f.StreamEnded() {
					continue
				}
				id := f.StreamID
				// A ping with the request, as grpc-go's BDP estimator sends
				// it, then the response.
				hbuf.Reset()
				_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
				if fr.WritePing(false, [8]byte{byte(id)}) != nil ||
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}) != nil ||
					fr.WriteData(id, false, []byte{0, 0, 0, 0, 2, 'o', 'k'}) != nil {
					return
				}
				hbuf.Reset()
				_ = enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: "0"})
				if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true, EndStream: true}) != nil {
					return
				}
			}
		}
	})
	e := newEP(t, Config{Addr: addr})
	var resp rawcodec.Message
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("w"), &resp); err != nil { // connected
		t.Fatal(err)
	}
	tk, ch := startWait(t, e, context.Background(), "/"+svc+"/Echo", time.Now().Add(5*time.Second), []byte("x"))
	if tk == (Ticket{}) {
		t.Fatal("the call took the waiting path")
	}
	if r := waitResult(t, ch); r.err != nil || string(r.body) != "ok" {
		t.Fatalf("async call: %q %v", r.body, r.err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case id := <-acked:
			if id == tk.id {
				return
			}
		case <-deadline:
			t.Fatal("the PING read with the async call's reply was never acknowledged")
		}
	}
}
