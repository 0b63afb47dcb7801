package inbound

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// newGRPCAsyncEnv is a private listener whose routes go through their
// Guard to a real grpc-go backend over the direct transport, as the
// runtime wires them; async false keeps every request on the workers.
func newGRPCAsyncEnv(t testing.TB, async bool) *env {
	t.Helper()
	if async {
		return newGRPCEnv(t, grpcAsync)
	}
	return newGRPCEnv(t, grpcWorkers)
}

// How newGRPCEnv's requests are served.
const (
	grpcAsync   = iota // on the I/O goroutines
	grpcWorkers        // on workers, with a context per request (the route as if it had retries)
	grpcWait           // on workers waiting for a started call (waitDirect): one-attempt routes, clients whose connection is not plain TCP (as a TLS client's)
	grpcRetry          // on workers, routes with retries (3 attempts on Unavailable): the Guard's DoUntil, the deadline a value (guardedUntil)
)

// opaqueListener's connections hide their *net.TCPConn, as TLS does:
// their requests go to the workers.
type opaqueListener struct{ net.Listener }

func (l opaqueListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

func newGRPCEnv(t testing.TB, mode int) *env {
	t.Helper()
	async := mode != grpcWorkers && mode != grpcRetry
	backend := &testkit.Stub{}
	m := admin.NewMetrics()
	pool := pooltest.GRPC(t, config.Upstream{Name: "demo", Protocol: "grpc", Endpoints: []string{backend.Start(t)}, LB: "round_robin", Connections: 1,
		GRPCTransport: config.GRPCTransportDirect}, grpcpool.Options{})
	g := pool.Guard()
	routes := []Route{
		{Cmd: cmdEcho, Method: demo.MethodEcho, Upstream: pool, Guard: g, UpstreamName: "demo"},
		{Cmd: cmdFail, Method: demo.MethodFail, Upstream: pool, Guard: g, UpstreamName: "demo"},
		{Cmd: cmdSleep, Method: demo.MethodSleep, Upstream: pool, Guard: g, UpstreamName: "demo"},
		{Cmd: cmdMeta, Method: demo.MethodMeta, Upstream: pool, Guard: g, UpstreamName: "demo"},
	}
	for i := range routes {
		routes[i].Timeout = config.DefaultTimeout
		if mode == grpcRetry {
			routes[i].Policy = resilience.Policy{Idempotent: true, RetryOn: resilience.RetryUnavailable, MaxAttempts: 3}
		}
	}
	lim := Limits{MaxInFlight: config.DefaultMaxInFlight, IdleTimeout: config.DefaultIdleTimeout, ReadTimeout: config.DefaultReadTimeout}
	tab := NewTable("priv", routes, lim, nil, m)
	for _, rs := range tab.byCmd {
		for _, r := range rs {
			if r.gasync == nil && mode != grpcRetry {
				t.Fatalf("route %d not asynchronous", r.Cmd)
			}
			if !async {
				r.gasync = nil
			}
		}
	}
	c := mgp.New(0)
	e := &env{t: t, gs: backend.Server, pool: pool, metrics: m, codec: c,
		srv: New(Options{Name: "priv", Codec: c, Metrics: m, DrainQuiet: 100 * time.Millisecond}, tab)}
	if mode != grpcWait {
		e.serve(t)
		return e
	}
	ln := testkit.Listen(t, "127.0.0.1:0")
	e.addr = ln.Addr().String()
	e.done = make(chan error, 1)
	go func() { e.done <- e.srv.Serve(opaqueListener{ln}) }()
	t.Cleanup(func() {
		e.srv.Close()
		<-e.done
	})
	return e
}

var deadlineLine = regexp.MustCompile(`deadline=\d+`)

// TestAsyncGRPCSameAsWorker: private → gRPC requests answered on the I/O
// goroutines get byte for byte the reply frames the workers give (OK
// bodies, gRPC statuses as results and messages, metadata from
// extensions, the deadline of ext 3 as grpc-timeout and the timeout
// result), and start no worker.
func TestAsyncGRPCSameAsWorker(t *testing.T) {
	reqs := []codec.Frame{
		{Cmd: cmdEcho, UIN: 7, Body: []byte("hello")},
		{Cmd: cmdEcho, Body: bytes.Repeat([]byte("x"), 100<<10)},
		{Cmd: cmdFail, Body: []byte("5 no such thing")},
		{Cmd: cmdFail, Body: []byte("14 down")},
		{Cmd: cmdFail, Body: []byte("2 1234 custom result")},
		{Cmd: cmdMeta, UIN: 42, Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc")}, deadlineExt(900)}},
		{Cmd: cmdSleep, Body: []byte("2s"), Ext: []codec.Ext{deadlineExt(60)}},
		{Cmd: cmdSleep, Body: []byte("1ms"), Ext: []codec.Ext{deadlineExt(2000)}},
	}
	run := func(mode int) ([]codec.Frame, *env) {
		e := newGRPCEnv(t, mode)
		cl := e.dial()
		var out []codec.Frame
		for _, r := range reqs {
			f, ok := cl.call(r)
			if !ok {
				t.Fatalf("no reply to %d %q", r.Cmd, r.Body)
			}
			f.Body = deadlineLine.ReplaceAll(bytes.Clone(f.Body), []byte("deadline=N"))
			out = append(out, f)
		}
		return out, e
	}
	work, we := run(grpcWorkers)
	async, ae := run(grpcAsync)
	waited, wte := run(grpcWait)
	retried, rte := run(grpcRetry)
	for i := range reqs {
		w, a, wt := work[i], async[i], waited[i]
		if w.Result != a.Result || !bytes.Equal(w.Body, a.Body) || fmt.Sprint(w.Ext) != fmt.Sprint(a.Ext) || w.UIN != a.UIN || w.Seq != a.Seq {
			t.Errorf("request %d (cmd %d): worker %d %q %v, async %d %q %v", i, reqs[i].Cmd, w.Result, trim(w.Body), w.Ext, a.Result, trim(a.Body), a.Ext)
		}
		if rt := retried[i]; w.Result != rt.Result || !bytes.Equal(w.Body, rt.Body) || fmt.Sprint(w.Ext) != fmt.Sprint(rt.Ext) || w.UIN != rt.UIN || w.Seq != rt.Seq {
			t.Errorf("request %d (cmd %d): worker %d %q %v, worker with retries %d %q %v", i, reqs[i].Cmd, w.Result, trim(w.Body), w.Ext, rt.Result, trim(rt.Body), rt.Ext)
		}
		if w.Result != wt.Result || !bytes.Equal(w.Body, wt.Body) || fmt.Sprint(w.Ext) != fmt.Sprint(wt.Ext) || w.UIN != wt.UIN || w.Seq != wt.Seq {
			t.Errorf("request %d (cmd %d): worker %d %q %v, worker waiting for a started call %d %q %v", i, reqs[i].Cmd, w.Result, trim(w.Body), w.Ext, wt.Result, trim(wt.Body), wt.Ext)
		}
	}
	if n := wte.srv.workersStarted(); n == 0 {
		t.Fatal("the waiting environment started no worker")
	}
	// The Unavailable reply ("14 down") was retried once; with one
	// endpoint the next retry finds no untried endpoint (as on the
	// context path).
	if st := rte.pool.Guard().Stats(); st.Retries["retry"] != 1 || st.Retries["no_endpoint"] != 1 {
		t.Errorf("retries %v, want 1 sent and 1 without an endpoint", st.Retries)
	}
	if async[6].Result != codec.ResultTimeout {
		t.Errorf("expired request: result %d", async[6].Result)
	}
	if n := we.srv.workersStarted(); n == 0 {
		t.Fatal("the worker environment started no worker")
	}
	if n := ae.srv.workersStarted(); n != 0 {
		t.Fatalf("%d request workers started: the requests were handed off", n)
	}
	for _, code := range []string{"OK", "NotFound", "Unavailable", "DeadlineExceeded"} {
		for _, cmd := range []int{cmdEcho, cmdFail, cmdSleep} {
			wv := testutil.ToFloat64(we.metrics.Requests.WithLabelValues("priv", fmt.Sprint(cmd), "demo", code))
			av := testutil.ToFloat64(ae.metrics.Requests.WithLabelValues("priv", fmt.Sprint(cmd), "demo", code))
			if tv := testutil.ToFloat64(wte.metrics.Requests.WithLabelValues("priv", fmt.Sprint(cmd), "demo", code)); tv != wv {
				t.Errorf("cmd %d %s counted %v on the workers, %v on workers waiting for a started call", cmd, code, wv, tv)
			}
			if wv != av {
				t.Errorf("cmd %d %s counted %v on the workers, %v on the I/O goroutines", cmd, code, wv, av)
			}
		}
	}
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// TestAsyncGRPCPipelined: many pipelined requests from several clients
// each get their own reply from the I/O goroutines.
func TestAsyncGRPCPipelined(t *testing.T) {
	e := newGRPCAsyncEnv(t, true)
	for c := range 3 {
		cl := e.dial()
		const n = 300
		chs := make([]chan codec.Frame, n)
		for i := range n {
			chs[i] = cl.start(codec.Frame{Cmd: cmdEcho, UIN: uint64(i), Body: []byte(fmt.Sprint(c, "-body-", i))})
		}
		for i := range n {
			f, ok := wait(t, chs[i])
			if !ok || f.Result != codec.ResultOK || string(f.Body) != fmt.Sprint(c, "-body-", i) || f.UIN != uint64(i) {
				t.Fatalf("client %d reply %d: %+v", c, i, f)
			}
		}
	}
	if n := e.srv.workersStarted(); n != 0 {
		t.Fatalf("%d request workers started", n)
	}
	ok := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("priv", fmt.Sprint(cmdEcho), "demo", "OK"))
	if ok != 900 {
		t.Fatalf("requests counted %v, want 900", ok)
	}
}

// TestAsyncGRPCCloseCancels: Close cancels a request in flight on the
// I/O goroutines (RST_STREAM: the upstream handler sees it) and returns
// at once; the Guard's in-flight count returns to zero.
//
// The same for a worker waiting for a call it started (waitDirect): the
// connection's end cancels the call, which the worker waits for.
func TestAsyncGRPCCloseCancels(t *testing.T) {
	for _, mode := range []int{grpcAsync, grpcWait, grpcRetry} {
		e := newGRPCEnv(t, mode)
		cl := e.dial()
		cl.start(codec.Frame{Cmd: cmdSleep, Body: []byte("5s")})
		ep := e.pool.Guard().Endpoints()[0]
		closeInFlight(t, e.srv, ep.InFlight)
		if !testkit.Await(2*time.Second, func() bool { return ep.InFlight() == 0 }) {
			t.Fatalf("mode %d: in flight after Close: %d", mode, ep.InFlight())
		}
		cnt := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("priv", fmt.Sprint(cmdSleep), "demo", "Canceled"))
		if cnt != 1 {
			t.Fatalf("mode %d: cancelled requests counted %v, want 1", mode, cnt)
		}
	}
}
