package shadow

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func cfg(conc, queue int) *config.Shadow {
	return &config.Shadow{Upstream: "s", Percent: 100, Timeout: time.Second, Concurrency: conc, Queue: queue,
		Diffs: config.ShadowDiffs{Keep: 10, Sample: 1, MaxBody: 4}}
}

func closeMirror(t *testing.T, m *Mirror) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Within(t, 5*time.Second, what, cond)
}

func TestCompare(t *testing.T) {
	ok := Outcome{Body: []byte("a"), Ext: []codec.Ext{{Key: 0x8001, Value: []byte("x")}, {Key: 0x8002, Value: []byte("t1")}, {Key: codec.ExtErrorMsg, Value: []byte("m")}}}
	for name, c := range map[string]struct {
		shadow Outcome
		ignore []uint16
		want   string
	}{
		"same":          {Outcome{Body: []byte("a"), Ext: []codec.Ext{{Key: 0x8002, Value: []byte("t1")}, {Key: 0x8001, Value: []byte("x")}}}, nil, ""},
		"result":        {Outcome{Result: 7, Body: []byte("a")}, nil, KindResult},
		"body":          {Outcome{Body: []byte("b")}, nil, KindBody},
		"ext":           {Outcome{Body: []byte("a"), Ext: []codec.Ext{{Key: 0x8001, Value: []byte("x")}, {Key: 0x8002, Value: []byte("t2")}}}, nil, KindExt},
		"ext ignored":   {Outcome{Body: []byte("a"), Ext: []codec.Ext{{Key: 0x8001, Value: []byte("x")}, {Key: 0x8002, Value: []byte("t2")}}}, []uint16{0x8002}, ""},
		"message":       {Outcome{Body: []byte("a"), Message: "other", Ext: []codec.Ext{{Key: 0x8001, Value: []byte("x")}, {Key: 0x8002, Value: []byte("t1")}}}, nil, ""},
		"error":         {Outcome{Err: errors.New("refused")}, nil, KindError},
		"timeout":       {Outcome{Err: context.DeadlineExceeded}, nil, KindTimeout},
		"missing ext":   {Outcome{Body: []byte("a")}, nil, KindExt},
		"nil vs empty":  {Outcome{Body: []byte{}, Ext: ok.Ext}, nil, KindBody},
		"grpc app code": {FromGRPC(nil, status.Error(codes.Unknown, "x"), nil, metadata.Pairs(mapping.MDResult, "150")), nil, KindResult},
	} {
		p := ok
		if name == "nil vs empty" {
			p.Body = nil // nil and empty bodies are equal bytes
			c.want = ""
		}
		if got := Compare(&p, &c.shadow, c.ignore); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
	// a private result and the gRPC status it maps to compare equal
	g := FromGRPC(nil, status.Error(codes.NotFound, "no such user"), nil, nil)
	p := Outcome{Result: codec.ResultFor(uint32(codes.NotFound), 0)}
	if k := Compare(&p, &g, nil); k != "" || g.Message != "no such user" {
		t.Fatalf("private vs grpc NOT_FOUND: %q %+v", k, g)
	}
}

// The shadow returns a different body for a known set of uins; the
// mismatch count equals that set's request count exactly and every other
// request matched.
func TestMirrorCountsExactly(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	bad := map[uint64]bool{3: true, 17: true, 99: true}
	mi := New("r", cfg(4, 2000), CallerFunc(func(_ context.Context, req *Request) Outcome {
		if bad[req.UIN] {
			return Outcome{Body: []byte("different")}
		}
		return Outcome{Body: bytes.ToUpper(req.Body)}
	}), m, nil)
	defer closeMirror(t, mi)
	const n = 1000
	wantBad := 0
	for i := range n {
		uin := uint64(i % 100)
		if bad[uin] {
			wantBad++
		}
		req := Request{UIN: uin, Body: []byte("hello")}
		primary := Outcome{Body: []byte("HELLO")}
		if !mi.Want(false) {
			t.Fatal("percent 100 skipped a request")
		}
		if !mi.Submit(&req, &primary) {
			t.Fatal("dropped with room in the queue")
		}
		req.Body[0] = 'X' // the caller reuses its buffers: the mirror copied
		primary.Body[0] = 'X'
	}
	waitFor(t, "all compared", func() bool {
		c, _ := m.Counts("r")
		return c.Matched+c.Mismatched[KindBody] == n
	})
	c, _ := m.Counts("r")
	if c.Requests != n || c.Mismatched[KindBody] != uint64(wantBad) || c.Matched != uint64(n-wantBad) || c.Dropped != 0 {
		t.Fatalf("counts %+v, want %d body mismatches", c, wantBad)
	}
	d := m.Diffs("r", 0)
	if len(d) != 10 {
		t.Fatalf("kept %d diffs, want keep=10", len(d))
	}
	if d[0].Primary.BodyLen != 5 || d[0].Shadow.BodyLen != 9 || d[0].Primary.Body != nil || d[0].Primary.BodySHA256 == "" || !bad[d[0].UIN] {
		t.Fatalf("diff %+v", d[0])
	}
}

// A stalled shadow backend: Submit never blocks, at most concurrency+queue
// copies are taken, the rest are dropped and counted; closing ends the
// stalled calls.
func TestStalledShadowNeverBlocks(t *testing.T) {
	m := NewMetrics(nil)
	var calls atomic.Int64
	release := make(chan struct{})
	mi := New("r", cfg(2, 8), CallerFunc(func(ctx context.Context, _ *Request) Outcome {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return Outcome{Err: ctx.Err()}
	}), m, nil)
	const n = 10000
	accepted := 0
	start := time.Now()
	for range n {
		if mi.Submit(&Request{UIN: 1, Body: []byte("x")}, &Outcome{}) {
			accepted++
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("10000 submits took %v with the shadow stalled", el)
	}
	if accepted > 2+8 {
		t.Fatalf("accepted %d copies with concurrency 2 and queue 8", accepted)
	}
	c, _ := m.Counts("r")
	if c.Requests+c.Dropped != n || c.Dropped < n-10 {
		t.Fatalf("counts %+v", c)
	}
	close(release)
	closeMirror(t, mi)
	if mi.Submit(&Request{}, &Outcome{}) {
		t.Fatal("closed mirror accepted a copy")
	}
}

func TestShadowTimeout(t *testing.T) {
	m := NewMetrics(nil)
	c := cfg(1, 1)
	c.Timeout = 20 * time.Millisecond
	mi := New("r", c, CallerFunc(func(ctx context.Context, _ *Request) Outcome {
		<-ctx.Done() // a backend that never answers
		return Outcome{Err: status.Error(codes.DeadlineExceeded, "context deadline exceeded")}
	}), m, nil)
	defer closeMirror(t, mi)
	mi.Submit(&Request{UIN: 5}, &Outcome{})
	waitFor(t, "timeout counted", func() bool { c, _ := m.Counts("r"); return c.Mismatched[KindTimeout] == 1 })
	d := m.Diffs("", 0)
	if len(d) != 1 || d[0].Kind != KindTimeout || d[0].Latency < 0.02 || !strings.Contains(d[0].Shadow.Error, "deadline") {
		t.Fatalf("diffs %+v", d)
	}
}

func TestDiffsSampleShowBodies(t *testing.T) {
	m := NewMetrics(nil)
	c := cfg(1, 100)
	c.Diffs = config.ShadowDiffs{Keep: 3, Sample: 2, ShowBodies: true, MaxBody: 4}
	mi := New("r", c, CallerFunc(func(context.Context, *Request) Outcome { return Outcome{Body: []byte("shadow-body")} }), m, nil)
	for i := range 10 {
		mi.Submit(&Request{UIN: uint64(i + 1)}, &Outcome{Body: []byte("primary-body")})
	}
	waitFor(t, "compared", func() bool { c, _ := m.Counts("r"); return c.Mismatched[KindBody] == 10 })
	closeMirror(t, mi)
	d := m.Diffs("r", 0)
	// 1 in 2 of 10 recorded (uins 1,3,5,7,9), the newest 3 kept, newest first
	if len(d) != 3 || d[0].UIN != 9 || d[2].UIN != 5 {
		t.Fatalf("diffs %+v", d)
	}
	if string(d[0].Primary.Body) != "prim" || string(d[0].Shadow.Body) != "shad" {
		t.Fatalf("bodies %q %q", d[0].Primary.Body, d[0].Shadow.Body)
	}
	if got := m.Diffs("r", 1); len(got) != 1 || got[0].UIN != 9 {
		t.Fatalf("limit: %+v", got)
	}
	// a new generation's mirror for the route keeps the log (and may shrink it)
	c.Diffs.Keep = 2
	mi2 := New("r", c, CallerFunc(func(context.Context, *Request) Outcome { return Outcome{} }), m, nil)
	closeMirror(t, mi2)
	if d := m.Diffs("r", 0); len(d) != 2 || d[0].UIN != 9 || d[1].UIN != 7 {
		t.Fatalf("after reload %+v", d)
	}
}

func TestWantOnewayAndPercent(t *testing.T) {
	m := NewMetrics(nil)
	c := cfg(1, 1)
	c.Percent = 10
	mi := New("r", c, CallerFunc(func(context.Context, *Request) Outcome { return Outcome{} }), m, nil)
	defer closeMirror(t, mi)
	if mi.Want(true) {
		t.Fatal("ONEWAY mirrored without oneway: true")
	}
	n := 0
	for range 20000 {
		if mi.Want(false) {
			n++
		}
	}
	if n < 1600 || n > 2400 {
		t.Fatalf("10%% mirrored %d of 20000", n)
	}
	if a := testing.AllocsPerRun(1000, func() { _ = mi.Want(false) }); a != 0 {
		t.Fatalf("Want allocates %v", a)
	}
	var nilMirror *Mirror
	if nilMirror.Want(false) {
		t.Fatal("nil mirror wants")
	}
}

func TestFromFrame(t *testing.T) {
	f := codec.Frame{Result: 8, Body: []byte("b"), Ext: []codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte("nope")}}}
	o := FromFrame(&f)
	if o.Result != 8 || o.Message != "nope" || string(o.Body) != "b" {
		t.Fatalf("%+v", o)
	}
}

// A mirror that never gets a copy starts no goroutine (goleak in TestMain
// checks the rest); a skipped call counts as dropped; a oneway send without
// error matches.
func TestLazySkipOneway(t *testing.T) {
	m := NewMetrics(nil)
	idle := New("idle", cfg(64, 1), CallerFunc(func(context.Context, *Request) Outcome { return Outcome{} }), m, nil)
	closeMirror(t, idle)
	mi := New("r", cfg(1, 10), CallerFunc(func(_ context.Context, req *Request) Outcome {
		if req.UIN == 1 {
			return Outcome{Err: ErrSkipped}
		}
		return Outcome{}
	}), m, nil)
	defer closeMirror(t, mi)
	mi.Submit(&Request{UIN: 1}, &Outcome{Body: []byte("x")})
	mi.Submit(&Request{UIN: 2, Oneway: true}, &Outcome{Body: []byte("x")})
	waitFor(t, "both handled", func() bool { c, _ := m.Counts("r"); return c.Dropped == 1 && c.Matched == 1 })
}
