package inbound

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// p2pEnv is a private listener whose one route (legacy.CmdEcho and
// legacy.CmdSlow) goes to a private pool of one connection to the
// reference legacy server: the real pool, sockets and server.
type p2pEnv struct {
	*env
	pool    *upstream.PrivatePool
	backend *legacy.Server
}

func newP2PEnv(t *testing.T, lim Limits) *p2pEnv {
	t.Helper()
	backend, addr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{EchoExt: true})
	pool := pooltest.Private(t, config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr},
		Connections: 1}.WithDefaults(), nil, 1)
	if lim.MaxInFlight == 0 {
		lim.MaxInFlight = config.DefaultMaxInFlight
	}
	lim.IdleTimeout, lim.ReadTimeout = config.DefaultIdleTimeout, config.DefaultReadTimeout
	m := admin.NewMetrics()
	c := mgp.New(0)
	routes := []Route{
		{Cmd: legacy.CmdEcho, Private: pool, UpstreamName: "legacy", Timeout: config.DefaultTimeout},
		{Cmd: legacy.CmdSlow, Private: pool, UpstreamName: "legacy", Timeout: config.DefaultTimeout},
	}
	e := &env{t: t, metrics: m, codec: c,
		srv: New(Options{Name: "p2p", Codec: c, Metrics: m, DrainQuiet: 100 * time.Millisecond}, NewTable("p2p", routes, lim, nil, m))}
	e.serve(t)
	return &p2pEnv{env: e, pool: pool, backend: backend}
}

// workersStarted is how many request workers the server has started.
func (s *Server) workersStarted() int { return s.work.Started() }

// Pipelined private → private requests are answered from the I/O
// goroutines, without a request worker: each reply carries its request's
// seq, body and extensions, and every request is counted.
func TestAsyncPrivateProxy(t *testing.T) {
	e := newP2PEnv(t, Limits{})
	cl := e.dial()
	const n = 400
	chs := make([]chan codec.Frame, n)
	for i := range n {
		chs[i] = cl.start(codec.Frame{Cmd: legacy.CmdEcho, UIN: uint64(i), Body: []byte(fmt.Sprint("body-", i)),
			Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc")}, {Key: 0x8001, Value: []byte{byte(i)}}}})
	}
	for i := range n {
		f, ok := wait(t, chs[i])
		if !ok || f.Result != codec.ResultOK || string(f.Body) != fmt.Sprint("body-", i) || f.UIN != uint64(i) || f.Seq != uint32(i+1) {
			t.Fatalf("reply %d: %+v", i, f)
		}
		if v, _ := f.ExtValue(0x8001); !bytes.Equal(v, []byte{byte(i)}) {
			t.Fatalf("reply %d: extension 0x8001 = %v", i, v)
		}
		if v, ok := f.ExtValue(codec.ExtDeadline); !ok || len(v) != 4 {
			t.Fatalf("reply %d: the deadline was not sent upstream: %v", i, f.Ext)
		}
	}
	if w := e.srv.workersStarted(); w != 0 {
		t.Fatalf("%d request workers started: the requests were handed off", w)
	}
	ok := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("p2p", fmt.Sprint(legacy.CmdEcho), "legacy", "OK"))
	if ok != n {
		t.Fatalf("requests counted %v, want %d", ok, n)
	}
}

// A reply later than the request's deadline is answered with result 5 at
// the deadline, as on a worker.
func TestAsyncDeadline(t *testing.T) {
	e := newP2PEnv(t, Limits{})
	cl := e.dial()
	t0 := time.Now()
	f, ok := cl.call(codec.Frame{Cmd: legacy.CmdSlow, Body: []byte{0, 0, 0, 250}, Ext: []codec.Ext{deadlineExt(40)}})
	el := time.Since(t0)
	if !ok || f.Result != codec.ResultTimeout {
		t.Fatalf("reply %+v, want result %d", f, codec.ResultTimeout)
	}
	if el < 40*time.Millisecond || el > 200*time.Millisecond {
		t.Fatalf("answered after %v, want about 40ms", el)
	}
	if w := e.srv.workersStarted(); w != 0 {
		t.Fatalf("%d request workers started", w)
	}
}

// closeInFlight waits (bounded) until inFlight reports one request at the
// upstream, closes srv, and fails unless Close returned at once.
func closeInFlight(t *testing.T, srv *Server, inFlight func() int64) {
	t.Helper()
	if !testkit.Await(5*time.Second, func() bool { return inFlight() == 1 }) {
		t.Fatal("request not in flight upstream")
	}
	t0 := time.Now()
	srv.Close()
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("Close took %v with a request in flight", el)
	}
}

// Close cancels the requests in flight on the I/O goroutines as it
// cancels the workers' calls: it returns at once, not when the upstream
// answers, and the pool's in-flight count returns to zero.
func TestAsyncCloseCancels(t *testing.T) {
	e := newP2PEnv(t, Limits{})
	cl := e.dial()
	cl.start(codec.Frame{Cmd: legacy.CmdSlow, Body: []byte{0, 0, 0x13, 0x88}}) // 5s
	ep := e.pool.Endpoints()[0]
	closeInFlight(t, e.srv, ep.InFlight)
	if ep.InFlight() != 0 || e.pool.Stats().InFlight != 0 {
		t.Fatalf("in flight after Close: endpoint %d, pool %d", ep.InFlight(), e.pool.Stats().InFlight)
	}
	cnt := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("p2p", fmt.Sprint(legacy.CmdSlow), "legacy", "Canceled"))
	if cnt != 1 {
		t.Fatalf("cancelled requests counted %v, want 1", cnt)
	}
}

// A client that does not read its replies neither blocks the upstream
// connection (shared with another client) nor loses replies: it stops
// being read at its in-flight cap, and gets every reply once it reads.
func TestAsyncSlowClient(t *testing.T) {
	e := newP2PEnv(t, Limits{MaxInFlight: 8})
	slow, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	const n, size = 48, 256 << 10
	go func() {
		for i := range n {
			b, _ := e.codec.Append(nil, &codec.Frame{Cmd: legacy.CmdEcho, Seq: uint32(i + 1), Body: bytes.Repeat([]byte{byte(i)}, size)})
			if _, err := slow.Write(b); err != nil {
				return
			}
		}
	}()
	// The slow client's replies fill its socket; it is stopped at its cap.
	if !testkit.Await(10*time.Second, func() bool { return e.srv.inFlight() == 8 }) {
		t.Fatalf("in flight %d, want the cap 8", e.srv.inFlight())
	}
	// Another client of the same upstream connection is served meanwhile.
	cl := e.dial()
	for i := range 20 {
		t0 := time.Now()
		f, ok := cl.call(codec.Frame{Cmd: legacy.CmdEcho, Body: []byte(fmt.Sprint(i))})
		if !ok || string(f.Body) != fmt.Sprint(i) {
			t.Fatalf("other client: %+v", f)
		}
		if el := time.Since(t0); el > 2*time.Second {
			t.Fatalf("other client waited %v behind the slow one", el)
		}
	}
	// Nothing lost: the slow client reads every reply, in some order.
	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	rd := codec.NewReader(slow, e.codec, 64<<10)
	seen := map[uint32]bool{}
	var f codec.Frame
	for range n {
		if err := rd.ReadFrame(&f); err != nil {
			t.Fatalf("after %d replies: %v", len(seen), err)
		}
		i := f.Seq - 1
		if f.Result != codec.ResultOK || len(f.Body) != size || f.Body[0] != byte(i) || f.Body[size-1] != byte(i) || seen[f.Seq] {
			t.Fatalf("reply seq %d: result %d, %d bytes", f.Seq, f.Result, len(f.Body))
		}
		seen[f.Seq] = true
	}
}

// inFlight is the number of requests in flight over every connection.
func (s *Server) inFlight() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for c := range s.conns {
		n += c.inflight.Load()
	}
	return n
}

// Many clients pipelining fast, slow and expiring requests while the
// server closes under them: every reply that arrives is its request's,
// Close returns promptly, and nothing stays in flight upstream (goleak
// checks the goroutines at exit; -race the hand-offs).
func TestAsyncStressClose(t *testing.T) {
	e := newP2PEnv(t, Limits{MaxInFlight: 64})
	const clients, each = 4, 300
	var sent sync.WaitGroup
	cls := make([]*client, clients)
	for k := range cls {
		cls[k] = e.dial()
	}
	replied := make(chan int, clients*each)
	for k, cl := range cls {
		sent.Add(1)
		go func() {
			defer sent.Done()
			for i := range each {
				f := codec.Frame{Cmd: legacy.CmdEcho, Body: []byte(fmt.Sprint(k, "/", i))}
				if i%3 == 0 {
					f = codec.Frame{Cmd: legacy.CmdSlow, Body: []byte{0, 0, 0, byte(i % 7)}, Ext: []codec.Ext{deadlineExt(uint32(1 + i%5))}}
				}
				want := string(f.Body)
				ch := cl.start(f)
				go func() {
					g, ok, timedOut := tryWait(ch)
					switch {
					case timedOut:
						t.Errorf("client %d request %d: no reply and no close", k, i)
					case ok && g.Result == codec.ResultOK && string(g.Body) != want:
						t.Errorf("client %d request %d: got %q", k, i, g.Body)
					case ok:
						replied <- 1
					}
				}()
			}
		}()
	}
	if !testkit.Await(10*time.Second, func() bool { return len(replied) >= clients*each/4 }) {
		t.Fatalf("only %d replies", len(replied))
	}
	t0 := time.Now()
	e.srv.Close()
	if el := time.Since(t0); el > 2*time.Second {
		t.Fatalf("Close took %v", el)
	}
	sent.Wait()
	if !testkit.Await(5*time.Second, func() bool { return e.pool.Stats().InFlight == 0 }) {
		t.Fatalf("in flight upstream after Close: %d", e.pool.Stats().InFlight)
	}
	for _, cl := range cls {
		cl.waitClosed()
	}
}
