package inbound

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
)

func TestBodiesAndMetadata(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	r, ok := cl.call(codec.Frame{Cmd: cmdEcho, UIN: 42, Body: []byte("hello \x00 world")})
	if !ok || r.Result != 0 || string(r.Body) != "hello \x00 world" || r.Flags != codec.FlagResponse || r.Cmd != cmdEcho || r.UIN != 42 {
		t.Fatalf("echo reply %+v ok=%v", r, ok)
	}
	r, _ = cl.call(codec.Frame{Cmd: cmdUpper, Body: []byte("abc")})
	if string(r.Body) != "ABC" {
		t.Fatalf("upper: %q", r.Body)
	}
	// Empty body.
	r, _ = cl.call(codec.Frame{Cmd: cmdEcho})
	if r.Result != 0 || len(r.Body) != 0 {
		t.Fatalf("empty echo: %+v", r)
	}
	// Large body (above gRPC's pooling threshold, several HTTP/2 frames).
	big := strings.Repeat("0123456789abcdef", 64<<10)
	r, _ = cl.call(codec.Frame{Cmd: cmdEcho, Body: []byte(big)})
	if string(r.Body) != big {
		t.Fatalf("big echo: %d bytes back", len(r.Body))
	}
	// Metadata: uin, traceparent, caller, app extensions, deadline.
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r, _ = cl.call(codec.Frame{Cmd: cmdMeta, UIN: 7, Ext: []codec.Ext{
		{Key: codec.ExtTraceparent, Value: []byte(tp)},
		{Key: codec.ExtCaller, Value: []byte("legacy-svc")},
		{Key: 0x8001, Value: []byte{0xde, 0xad}},
		{Key: 0x10, Value: []byte("dropped")},
		deadlineExt(1500),
	}})
	lines := map[string]string{}
	for _, l := range strings.Split(string(r.Body), "\n") {
		k, v, _ := strings.Cut(l, "=")
		lines[k] = v
	}
	want := map[string]string{"x-mgp-uin": "7", "traceparent": tp, "x-mgp-caller": "legacy-svc", "x-mgp-ext-32769-bin": "dead"}
	for k, v := range want {
		if lines[k] != v {
			t.Errorf("metadata %s = %q, want %q (all: %q)", k, lines[k], v, r.Body)
		}
	}
	dl, _ := strconv.Atoi(lines["deadline"])
	if dl <= 1000 || dl > 1500 {
		t.Errorf("deadline %dms, want (1000,1500]", dl)
	}
	for k := range lines {
		if strings.Contains(k, "16") || k == "x-mgp-key-id" {
			t.Errorf("unexpected metadata %s", k)
		}
	}
	// No deadline extension → route timeout (default 3s).
	r, _ = cl.call(codec.Frame{Cmd: cmdMeta})
	if !strings.Contains(string(r.Body), "deadline=2") {
		t.Errorf("route timeout not applied: %q", r.Body)
	}
}

func TestStatusTable(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	for result := uint16(1); result <= 16; result++ {
		code, _ := codec.GRPCCode(result)
		r, _ := cl.call(codec.Frame{Cmd: cmdFail, Body: []byte(fmt.Sprintf("%d failing %d", code, result))})
		if r.Result != result || errMsg(r) != fmt.Sprintf("failing %d", result) {
			t.Errorf("gRPC code %d: result %d msg %q, want %d", code, r.Result, errMsg(r), result)
		}
		back, _ := codec.GRPCCode(r.Result)
		if back != code {
			t.Errorf("result %d does not round-trip to code %d", r.Result, code)
		}
	}
	// Application error: UNKNOWN + x-mgp-result trailer.
	r, _ := cl.call(codec.Frame{Cmd: cmdFail, Body: []byte("2 1234 app says no")})
	if r.Result != 1234 || errMsg(r) != "app says no" {
		t.Errorf("app error: result %d msg %q", r.Result, errMsg(r))
	}
	// UNKNOWN without x-mgp-result is result 10 (before: 9), and a table
	// result in x-mgp-result does not override it.
	for _, body := range []string{"2 plain unknown", "2 8 says not found"} {
		r, _ := cl.call(codec.Frame{Cmd: cmdFail, Body: []byte(body)})
		if r.Result != codec.ResultUnknown {
			t.Errorf("%q: result %d want %d", body, r.Result, codec.ResultUnknown)
		}
	}
	// An empty status message still travels (ext 5 present, empty).
	r, _ = cl.call(codec.Frame{Cmd: cmdFail, Body: []byte(fmt.Sprintf("%d", codes.NotFound))})
	if v, ok := r.ExtValue(codec.ExtErrorMsg); r.Result != codec.ResultNotFound || !ok || len(v) != 0 {
		t.Errorf("empty message: result %d ext5 %q present=%v", r.Result, v, ok)
	}
	// Deadline from the frame: expires → result 5.
	r, _ = cl.call(codec.Frame{Cmd: cmdSleep, Body: []byte("2s"), Ext: []codec.Ext{deadlineExt(50)}})
	if r.Result != codec.ResultTimeout {
		t.Errorf("deadline: result %d", r.Result)
	}
	if n := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("priv", fmt.Sprint(cmdSleep), "", "DeadlineExceeded")); n < 1 {
		t.Errorf("requests metric code=DeadlineExceeded = %v", n)
	}
}

func TestPipeliningOutOfOrder(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	// Three requests in one write; the slowest first.
	var buf []byte
	for i, body := range []string{"300ms", "100ms", "1ms"} {
		f := codec.Frame{Cmd: cmdSleep, Seq: uint32(i + 1), Body: []byte(body)}
		buf, _ = e.codec.Append(buf, &f)
	}
	cl.write(buf)
	var order []uint32
	for len(order) < 3 {
		order = append(order, cl.next("a reply").Seq)
	}
	if order[0] != 3 || order[1] != 2 || order[2] != 1 {
		t.Fatalf("completion order %v, want [3 2 1]", order)
	}
	// Many in flight at once, matched by seq.
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := 0; i < 200; i++ {
		wg.Add(1)
		ch := cl.start(codec.Frame{Cmd: cmdEcho, Body: []byte(strconv.Itoa(i))})
		go func(i int) {
			defer wg.Done()
			r, ok, _ := tryWait(ch)
			if !ok || string(r.Body) != strconv.Itoa(i) {
				bad.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d mismatched replies", bad.Load())
	}
}

func TestHeartbeatOnewayUnknown(t *testing.T) {
	var oneways atomic.Int32
	e := newEnv(t, envOpts{extra: map[string]demo.Handler{
		"Gate": func(_ context.Context, b []byte) ([]byte, error) { oneways.Add(1); return b, nil },
	}})
	cl := e.dial()
	r, _ := cl.call(codec.Frame{Cmd: 9, Seq: 77, Flags: codec.FlagHeartbeat})
	if r.Seq != 77 || r.Flags != codec.FlagResponse|codec.FlagHeartbeat || r.Result != 0 {
		t.Fatalf("heartbeat reply %+v", r)
	}
	cl.start(codec.Frame{Cmd: cmdGate, Seq: 5, Flags: codec.FlagOneway, Body: []byte("x")})
	r, _ = cl.call(codec.Frame{Cmd: 999999, Seq: 6})
	if r.Result != codec.ResultUnknownCommand || r.Seq != 6 {
		t.Fatalf("unknown cmd reply %+v", r)
	}
	// Oneway to unknown cmd: nothing comes back; a later request still works.
	cl.start(codec.Frame{Cmd: 999999, Seq: 7, Flags: codec.FlagOneway})
	r, _ = cl.call(codec.Frame{Cmd: cmdEcho, Seq: 8, Body: []byte("after")})
	if r.Seq != 8 || string(r.Body) != "after" {
		t.Fatalf("reply %+v", r)
	}
	testkit.Await(2*time.Second, func() bool { return oneways.Load() == 1 })
	if oneways.Load() != 1 {
		t.Fatalf("oneway reached upstream %d times", oneways.Load())
	}
	// No reply was sent for the oneways (5 and 7).
	for len(cl.got) > 0 {
		f := <-cl.got
		if f.Seq == 5 || f.Seq == 7 {
			t.Fatalf("reply to oneway: %+v", f)
		}
	}
	if n := testutil.ToFloat64(e.metrics.Heartbeats.WithLabelValues("priv")); n != 1 {
		t.Errorf("heartbeats metric %v", n)
	}
	if n := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("priv", "unknown_cmd")); n != 2 {
		t.Errorf("unknown_cmd metric %v", n)
	}
}

func TestDuplicateSeqInFlight(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	var buf []byte
	first := codec.Frame{Cmd: cmdSleep, Seq: 10, Body: []byte("200ms")}
	dup := codec.Frame{Cmd: cmdEcho, Seq: 10, Body: []byte("dup")}
	buf, _ = e.codec.Append(buf, &first)
	buf, _ = e.codec.Append(buf, &dup)
	cl.write(buf)
	var got []codec.Frame
	for len(got) < 2 {
		got = append(got, cl.next("a reply"))
	}
	if got[0].Result != codec.ResultBadRequest || got[1].Result != 0 || string(got[1].Body) != "200ms" {
		t.Fatalf("replies %+v", got)
	}
	// Once the first completed, the seq is free again.
	r, _ := cl.call(codec.Frame{Cmd: cmdEcho, Seq: 10, Body: []byte("again")})
	if r.Result != 0 || string(r.Body) != "again" {
		t.Fatalf("reuse seq: %+v", r)
	}
}

func TestBackpressureInFlightCap(t *testing.T) {
	var cur, peak atomic.Int32
	release := make(chan struct{})
	e := newEnv(t, envOpts{lim: Limits{MaxInFlight: 3}, extra: map[string]demo.Handler{
		"Gate": func(ctx context.Context, b []byte) ([]byte, error) {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
			cur.Add(-1)
			return b, nil
		},
	}})
	cl := e.dial()
	var chs []chan codec.Frame
	for i := 0; i < 10; i++ {
		chs = append(chs, cl.start(codec.Frame{Cmd: cmdGate, Body: []byte("x")}))
	}
	testkit.Await(3*time.Second, func() bool { return cur.Load() >= 3 })
	time.Sleep(100 * time.Millisecond) // room for a 4th call, were the cap broken
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak concurrency %d, want 3", p)
	}
	close(release)
	for _, ch := range chs {
		if r, ok := wait(t, ch); !ok || r.Result != 0 {
			t.Fatalf("reply %+v", r)
		}
	}
}

func TestDrainUnderLoad(t *testing.T) {
	e := newEnv(t, envOpts{})
	const workers = 8
	var okN, failN atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		cl := e.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, ok, _ := tryWait(cl.start(codec.Frame{Cmd: cmdEcho, Body: []byte("x")}))
				if !ok || r.Result != 0 {
					failN.Add(1)
					return
				}
				okN.Add(1)
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(ctxT(t, 5*time.Second)) }()
	// Load keeps flowing while draining: poll for progress (bounded).
	testkit.Await(3*time.Second, e.srv.draining.Load)
	before := okN.Load()
	if !testkit.Await(3*time.Second, func() bool { return okN.Load() >= before+10 }) {
		t.Error("no requests served while draining")
	}
	close(stop)
	wg.Wait()
	testkit.Returns(t, shut, 5*time.Second, "Shutdown")
	if failN.Load() != 0 || okN.Load() == 0 {
		t.Fatalf("ok=%d failed=%d", okN.Load(), failN.Load())
	}
	t.Logf("served %d requests, 0 failed, across drain", okN.Load())
}
