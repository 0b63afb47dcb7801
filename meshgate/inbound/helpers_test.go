package inbound

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/codectest"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Commands used by the test table.
const (
	cmdEcho  = 100
	cmdUpper = 101
	cmdFail  = 102
	cmdSleep = 103
	cmdMeta  = 104
	cmdGate  = 105 // testService Gate
)

type env struct {
	t       testing.TB
	gs      *grpc.Server
	pool    *grpcpool.Pool
	srv     *Server
	addr    string
	metrics *admin.Metrics
	codec   *mgp.Codec
	done    chan error
}

type envOpts struct {
	lim      Limits
	auth     *AuthPolicy
	extra    map[string]demo.Handler // methods of service test.Svc
	maxFrame int
	now      func() time.Time
	maxConns int           // Options.MaxConnections
	sendTO   time.Duration // Options.SendTimeout
	backend  []grpc.ServerOption
	log      *slog.Logger  // Options.Logger
	grace    time.Duration // Options.IdleGrace
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	return newEnvO(t, o)
}

func newEnvTB(b *testing.B) *env { return newEnvO(b, envOpts{}) }

func newEnvO(t testing.TB, o envOpts) *env {
	t.Helper()
	backend := &testkit.Stub{Options: o.backend}
	if o.extra != nil {
		backend.Services = map[string]map[string]demo.Handler{"test.Svc": o.extra}
	}
	m := admin.NewMetrics()
	pool := pooltest.GRPC(t, config.Upstream{Name: "demo", Protocol: "grpc", Endpoints: []string{backend.Start(t)}, LB: "round_robin", Connections: 2},
		grpcpool.Options{Conns: m.UpstreamConns.WithLabelValues("demo", "clientconn")})
	routes := []Route{
		{Cmd: cmdEcho, Method: demo.MethodEcho, Upstream: pool},
		{Cmd: cmdUpper, Method: demo.MethodUpper, Upstream: pool},
		{Cmd: cmdFail, Method: demo.MethodFail, Upstream: pool},
		{Cmd: cmdSleep, Method: demo.MethodSleep, Upstream: pool},
		{Cmd: cmdMeta, Method: demo.MethodMeta, Upstream: pool},
		{Cmd: cmdGate, Method: "/test.Svc/Gate", Upstream: pool},
	}
	// Unset limits and timeouts at their defaults, as config.ApplyDefaults does.
	if o.lim.MaxInFlight == 0 {
		o.lim.MaxInFlight = config.DefaultMaxInFlight
	}
	if o.lim.IdleTimeout == 0 {
		o.lim.IdleTimeout = config.DefaultIdleTimeout
	}
	if o.lim.ReadTimeout == 0 {
		o.lim.ReadTimeout = config.DefaultReadTimeout
	}
	for i := range routes {
		routes[i].Timeout = config.DefaultTimeout
	}
	c := mgp.New(o.maxFrame)
	srv := New(Options{Name: "priv", Codec: c, Metrics: m, DrainQuiet: 100 * time.Millisecond, Now: o.now, MaxConnections: o.maxConns, SendTimeout: o.sendTO, Logger: o.log, IdleGrace: o.grace}, NewTable("priv", routes, o.lim, o.auth, m))
	e := &env{t: t, gs: backend.Server, pool: pool, srv: srv, metrics: m, codec: c}
	e.serve(t)
	return e
}

// serve serves e.srv on 127.0.0.1 (e.addr) until cleanup, which closes it
// and waits for Serve to return (before the pool and the backend, cleaned
// up after, registered earlier).
func (e *env) serve(t testing.TB) {
	ln := testkit.Listen(t, "127.0.0.1:0")
	e.addr = ln.Addr().String()
	e.done = make(chan error, 1)
	go func() { e.done <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		e.srv.Close()
		<-e.done
	})
}

// client is a minimal pipelining MGP client over TCP.
type client struct {
	t    testing.TB
	nc   net.Conn
	c    *mgp.Codec
	wmu  sync.Mutex
	mu   sync.Mutex
	pend map[uint32]chan codec.Frame
	seq  uint32
	got  chan codec.Frame // every frame in arrival order
	done chan struct{}
	err  error
}

func (e *env) dial() *client {
	e.t.Helper()
	nc, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	cl := &client{t: e.t, nc: nc, c: e.codec, pend: map[uint32]chan codec.Frame{}, got: make(chan codec.Frame, 4096), done: make(chan struct{})}
	go cl.readLoop()
	e.t.Cleanup(func() { _ = nc.Close(); <-cl.done })
	return cl
}

func (cl *client) readLoop() {
	defer close(cl.done)
	rd := codec.NewReader(cl.nc, cl.c, 4096)
	var f codec.Frame
	for {
		if err := rd.ReadFrame(&f); err != nil {
			cl.mu.Lock()
			cl.err = err
			for _, ch := range cl.pend {
				close(ch)
			}
			cl.pend = map[uint32]chan codec.Frame{}
			cl.mu.Unlock()
			close(cl.got)
			return
		}
		g := codectest.Clone(&f)
		cl.mu.Lock()
		ch := cl.pend[g.Seq]
		delete(cl.pend, g.Seq)
		cl.mu.Unlock()
		if ch != nil {
			ch <- g
		}
		select {
		case cl.got <- g:
		default:
		}
	}
}

// expect registers a reply channel for seq before the test writes the
// request's bytes itself (split, signed or batched frames).
func (cl *client) expect(seq uint32) chan codec.Frame {
	ch := make(chan codec.Frame, 1)
	cl.mu.Lock()
	cl.pend[seq] = ch
	cl.mu.Unlock()
	return ch
}

// start sends f (assigning a seq when f.Seq == 0) and returns the reply
// channel (closed without a value if the connection closes).
func (cl *client) start(f codec.Frame) chan codec.Frame {
	cl.mu.Lock()
	if f.Seq == 0 {
		cl.seq++
		f.Seq = cl.seq
	}
	ch := make(chan codec.Frame, 1)
	if f.Flags&codec.FlagOneway == 0 {
		cl.pend[f.Seq] = ch
	}
	cl.mu.Unlock()
	b, err := cl.c.Append(nil, &f)
	if err != nil {
		// Not Fatal: start is called from helper goroutines too.
		cl.t.Errorf("encode: %v", err)
		close(ch)
		return ch
	}
	cl.write(b)
	return ch
}

func (cl *client) write(b []byte) {
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	_, _ = cl.nc.Write(b)
}

func (cl *client) call(f codec.Frame) (codec.Frame, bool) {
	return wait(cl.t, cl.start(f))
}

func wait(t testing.TB, ch chan codec.Frame) (codec.Frame, bool) {
	t.Helper()
	f, ok, timedOut := tryWait(ch)
	if timedOut {
		t.Fatal("no reply within 5s")
	}
	return f, ok
}

// tryWait is wait for goroutines other than the test's own (which must not
// call t.Fatal): a reply missing after 5s is reported, not fatal.
func tryWait(ch chan codec.Frame) (f codec.Frame, ok, timedOut bool) {
	select {
	case f, ok := <-ch:
		return f, ok, false
	case <-time.After(5 * time.Second):
		return codec.Frame{}, false, true
	}
}

// next returns the next frame the client received, in arrival order; it
// fails the test if the connection closes first or none comes within 5s.
func (cl *client) next(what string) codec.Frame {
	cl.t.Helper()
	select {
	case f, ok := <-cl.got:
		if !ok {
			cl.t.Fatalf("connection closed before %s", what)
		}
		return f
	case <-time.After(5 * time.Second):
		cl.t.Fatalf("no %s within 5s", what)
	}
	return codec.Frame{}
}

// waitClosed waits until the server closes the connection.
func (cl *client) waitClosed() error {
	cl.t.Helper()
	select {
	case <-cl.done:
		return cl.err
	case <-time.After(5 * time.Second):
		cl.t.Fatal("connection not closed within 5s")
	}
	return nil
}

func errMsg(f codec.Frame) string {
	v, _ := f.ExtValue(codec.ExtErrorMsg)
	return string(v)
}

func deadlineExt(ms uint32) codec.Ext {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], ms)
	return codec.Ext{Key: codec.ExtDeadline, Value: b[:]}
}

func isEOF(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
