package privconn_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// Commands of asyncServer.
const (
	cmdNow   = 1 // answered at once
	cmdLater = 2 // answered after 0-3ms (races the request's deadline)
	cmdNever = 3 // never answered
)

// asyncServer answers requests by cmd (cmdNow, cmdLater, cmdNever) with
// the request's body.
func asyncServer(t *testing.T) string {
	return rawServer(t, func(nc net.Conn) {
		var wmu sync.Mutex
		var pending sync.WaitGroup
		defer pending.Wait()
		write := func(f *codec.Frame) {
			wmu.Lock()
			defer wmu.Unlock()
			b, _ := mgpc.Append(nil, f)
			_, _ = nc.Write(b)
		}
		r := codec.NewReader(nc, mgpc, 4096)
		var f codec.Frame
		for r.ReadFrame(&f) == nil {
			resp := codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse, Body: append([]byte(nil), f.Body...)}
			switch f.Cmd {
			case cmdNow:
				write(&resp)
			case cmdLater:
				pending.Add(1)
				time.AfterFunc(time.Duration(rand.N(3000))*time.Microsecond, func() {
					defer pending.Done()
					write(&resp)
				})
			}
		}
	})
}

func dialAsync(t *testing.T, addr string, opts privconn.Options) *privconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, addr, mgpc, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cn
}

// Start completes each request exactly once, whichever of the reply, the
// deadline timer, Cancel and Close gets to it first, never while Start
// still reads the request's frame (the callback writes to it: -race), and
// every in-flight slot comes back.
func TestStartCompletesExactlyOnce(t *testing.T) {
	cn := dialAsync(t, asyncServer(t), privconn.Options{MaxInFlight: 1 << 16})
	const workers, each = 4, 400
	var (
		calls    [workers * each]atomic.Int32
		started  atomic.Int64
		finished atomic.Int64
		replies  atomic.Int64
		expired  atomic.Int64
		closed   atomic.Int64
		canceled atomic.Int64
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := w*each + i
				cmd := uint32(1 + rand.N(3))
				dl := time.Now().Add(time.Duration(rand.N(3000)) * time.Microsecond)
				switch {
				case cmd == cmdNow:
					dl = time.Now().Add(time.Second)
				case cmd == cmdNever && i%4 == 0:
					dl = time.Now().Add(time.Hour) // left for Close
				}
				body := []byte{byte(id), byte(id >> 8)}
				req := &codec.Frame{Cmd: cmd, Body: body}
				err := cn.Start(req, dl, func(resp *codec.Frame, err error) {
					req.Body, req.Ext = nil, nil // the frame is the caller's again
					if calls[id].Add(1) != 1 {
						t.Errorf("request %d completed twice", id)
					}
					switch {
					case err == nil:
						if string(resp.Body) != string(body) {
							t.Errorf("request %d got the reply of another: %x", id, resp.Body)
						}
						replies.Add(1)
					case errors.Is(err, context.DeadlineExceeded):
						expired.Add(1)
					case errors.Is(err, context.Canceled):
						canceled.Add(1)
					case errors.Is(err, privconn.ErrClosed):
						closed.Add(1)
					default:
						t.Errorf("request %d: unexpected error %v", id, err)
					}
					finished.Add(1)
				})
				if err != nil {
					if !errors.Is(err, privconn.ErrDeadlineExceeded) && !errors.Is(err, privconn.ErrNotSent) {
						t.Errorf("start %d: %v", id, err)
					}
					calls[id].Add(1) // never called back: counts as its completion
					continue
				}
				started.Add(1)
				if seq := req.Seq; i%7 == 0 {
					cn.Cancel(seq)
				}
			}
		}()
	}
	// The connection closes while requests are being started (once
	// replies and expiries have been seen).
	if !testkit.Await(10*time.Second, func() bool {
		return started.Load() >= workers*each/2 && replies.Load() > 0 && expired.Load() > 0
	}) {
		t.Fatalf("no replies (%d) or no expiries (%d)", replies.Load(), expired.Load())
	}
	cn.Close()
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for finished.Load() != started.Load() {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d started requests completed", finished.Load(), started.Load())
		}
		time.Sleep(time.Millisecond)
	}
	for id := range calls {
		if n := calls[id].Load(); n != 1 {
			t.Fatalf("request %d completed %d times", id, n)
		}
	}
	if n := cn.InFlight(); n != 0 {
		t.Fatalf("in flight after close: %d", n)
	}
	t.Logf("started %d: replies %d, expired %d, canceled %d, closed %d", started.Load(), replies.Load(), expired.Load(), canceled.Load(), closed.Load())
	if replies.Load() == 0 || expired.Load() == 0 || closed.Load() == 0 || canceled.Load() == 0 {
		t.Fatal("the stress did not exercise every way of completing")
	}
}

// A connection that fails while Starts are encoding their frames leaves
// each frame to its Start until encoded (the callback, which writes to
// the frame, would race with the encoding: -race) and completes each
// exactly once.
func TestStartRacesClose(t *testing.T) {
	addr := acceptAll(t)
	for range 20 {
		cn := dialAsync(t, addr, privconn.Options{})
		var started, finished atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := make([]byte, 32<<10) // encoding takes a while
				for range 100 {
					req := &codec.Frame{Cmd: cmdNever, Body: body}
					if err := cn.Start(req, time.Time{}, func(_ *codec.Frame, err error) {
						req.Body = nil
						if !errors.Is(err, privconn.ErrClosed) {
							t.Errorf("want ErrClosed, got %v", err)
						}
						finished.Add(1)
					}); err != nil {
						if !errors.Is(err, privconn.ErrNotSent) && !errors.Is(err, privconn.ErrClosed) {
							t.Errorf("start: %v", err)
						}
						continue
					}
					started.Add(1)
				}
			}()
		}
		testkit.Await(5*time.Second, func() bool { return started.Load() >= 50 })
		cn.Close()
		wg.Wait()
		if !testkit.Await(5*time.Second, func() bool { return finished.Load() == started.Load() }) {
			t.Fatalf("%d of %d completed", finished.Load(), started.Load())
		}
	}
}

// acceptAll accepts connections and reads them until they close.
func acceptAll(t *testing.T) string {
	ln := testkit.Listen(t, "127.0.0.1:0")
	testkit.ServeConns(t, ln, func(nc net.Conn) { _, _ = io.Copy(io.Discard, nc) })
	return ln.Addr().String()
}

// A Start whose reply does not come completes with a deadline error, not
// before its deadline; the slot is freed and the late reply is counted.
func TestStartDeadline(t *testing.T) {
	release := make(chan struct{})
	addr := rawServer(t, func(nc net.Conn) {
		r := codec.NewReader(nc, mgpc, 1024)
		var f codec.Frame
		if r.ReadFrame(&f) != nil {
			return
		}
		<-release
		writeFrame(t, nc, &codec.Frame{Seq: f.Seq, Flags: codec.FlagResponse})
		r.ReadFrame(&f) // until the client closes
	})
	late := make(chan struct{}, 1)
	cn := dialAsync(t, addr, privconn.Options{OnLate: func() { late <- struct{}{} }})
	defer cn.Close()
	defer close(release)
	start := time.Now()
	dl := start.Add(50 * time.Millisecond)
	got := make(chan error, 1)
	if err := cn.Start(&codec.Frame{Cmd: 1}, dl, func(_ *codec.Frame, err error) {
		if time.Now().Before(dl) {
			t.Error("expired before its deadline")
		}
		got <- err
	}); err != nil {
		t.Fatal(err)
	}
	err := testkit.Receive(t, got, 5*time.Second, "the deadline did not complete the request")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline, got %v", err)
	}
	if n := cn.InFlight(); n != 0 {
		t.Fatalf("slot not freed: %d", n)
	}
	release <- struct{}{}
	testkit.Receive(t, late, 5*time.Second, "late reply not counted")
	// A deadline already past is refused without sending.
	if err := cn.Start(&codec.Frame{Cmd: 1}, time.Now().Add(-time.Millisecond), func(*codec.Frame, error) {
		t.Error("called back for a request never sent")
	}); !errors.Is(err, privconn.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}
	if st := cn.Stats(); st.Sent != 1 {
		t.Fatalf("sent %d, want 1", st.Sent)
	}
}

// The connection failing under pending Starts completes each with
// ErrClosed; a Start on the closed connection is refused as not sent.
func TestStartConnectionFailure(t *testing.T) {
	addr := dropAfter(t, 3)
	cn := dialAsync(t, addr, privconn.Options{})
	defer cn.Close()
	errs := make(chan error, 3)
	for range 3 {
		if err := cn.Start(&codec.Frame{Cmd: 1}, time.Time{}, func(_ *codec.Frame, err error) { errs <- err }); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		err := testkit.Receive(t, errs, 5*time.Second, "pending request not failed")
		if !errors.Is(err, privconn.ErrClosed) {
			t.Fatalf("want ErrClosed, got %v", err)
		}
	}
	<-cn.Done()
	if err := cn.Start(&codec.Frame{Cmd: 1}, time.Time{}, func(*codec.Frame, error) {
		t.Error("called back for a request never sent")
	}); !errors.Is(err, privconn.ErrNotSent) {
		t.Fatalf("after close: %v", err)
	}
}

// Start's in-flight cap refuses without sending and without a callback.
func TestStartInFlightCap(t *testing.T) {
	cn := dialAsync(t, asyncServer(t), privconn.Options{MaxInFlight: 2})
	defer cn.Close()
	var done sync.WaitGroup
	for range 2 {
		done.Add(1)
		if err := cn.Start(&codec.Frame{Cmd: cmdNever}, time.Now().Add(time.Hour), func(_ *codec.Frame, err error) {
			if !errors.Is(err, privconn.ErrClosed) {
				t.Errorf("want ErrClosed, got %v", err)
			}
			done.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cn.Start(&codec.Frame{Cmd: cmdNever}, time.Time{}, func(*codec.Frame, error) {
		t.Error("called back for a request never sent")
	}); !errors.Is(err, privconn.ErrTooManyInFlight) {
		t.Fatalf("want ErrTooManyInFlight, got %v", err)
	}
	cn.Close()
	done.Wait()
}

// BenchmarkStart is BenchmarkRoundTrip's serial case through Start: the
// reply is read inside the callback, without a copy.
func BenchmarkStart(b *testing.B) {
	_, addr := testkit.Legacy(b, nil, nil, legacy.ServerOptions{})
	cn, err := privconn.Dial(context.Background(), addr, mgpc, privconn.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer cn.Close()
	body := make([]byte, 128)
	ch := make(chan error, 1)
	done := func(resp *codec.Frame, err error) {
		if err == nil && len(resp.Body) != len(body) {
			err = errors.New("short reply")
		}
		ch <- err
	}
	b.ReportAllocs()
	f := codec.Frame{Cmd: legacy.CmdEcho, Body: body}
	for b.Loop() {
		if err := cn.Start(&f, time.Now().Add(time.Second), done); err != nil {
			b.Fatal(err)
		}
		if err := <-ch; err != nil {
			b.Fatal(err)
		}
	}
}
