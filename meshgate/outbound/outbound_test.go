package outbound_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/codectest"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seen records what the legacy backend received.
type seen struct {
	mu   sync.Mutex
	last map[string]codec.Frame // by body
}

func (s *seen) record(f *codec.Frame) {
	c := codectest.Clone(f)
	s.mu.Lock()
	s.last[string(c.Body)] = c
	s.mu.Unlock()
}

func (s *seen) get(body string) (codec.Frame, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.last[body]
	return f, ok
}

type env struct {
	backend *legacy.Server
	addr    string // backend
	pool    *upstream.PrivatePool
	out     *outbound.Server
	reg     *prometheus.Registry
	metrics *admin.Metrics
	cc      *grpc.ClientConn
	seen    *seen
}

func listener(routes ...config.Route) config.Listener {
	return withTimeouts(config.Listener{Name: "grpc-in", Kind: config.KindGRPC, Address: "127.0.0.1:0", Routes: routes})
}

// withTimeouts gives routes without a timeout the default one, as
// config.ApplyDefaults does.
func withTimeouts(l config.Listener) config.Listener {
	l.Routes = append([]config.Route(nil), l.Routes...)
	for i := range l.Routes {
		if l.Routes[i].Timeout == 0 {
			l.Routes[i].Timeout = config.DefaultTimeout
		}
	}
	return l
}

var defaultRoutes = []config.Route{
	{Method: "/test.Echo/Echo", Cmd: legacy.CmdEcho, Upstream: "legacy"},
	{Method: "/test.Echo/Fail", Cmd: legacy.CmdFail, Upstream: "legacy"},
	{Method: "/test.Echo/Slow", Cmd: legacy.CmdSlow, Upstream: "legacy", Timeout: 3 * time.Second},
	{Method: "/test.Echo/Missing", Cmd: 99, Upstream: "legacy"},
	{Method: "/test.Upper/*", Cmd: legacy.CmdUppercase, Upstream: "legacy"},
}

func newEnv(t testing.TB, so legacy.ServerOptions, conns int, endpoints int) *env {
	t.Helper()
	m := admin.NewMetrics()
	e := &env{seen: &seen{last: map[string]codec.Frame{}}, reg: m.Registry, metrics: m}
	if so.OnRequest == nil {
		so.OnRequest = e.seen.record
	}
	var addrs []string
	for range endpoints {
		e.backend, e.addr = testkit.Legacy(t, nil, nil, so)
		addrs = append(addrs, e.addr)
	}
	e.addr = addrs[0]
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: addrs, LB: config.LBLeastRequest, Connections: conns}
	p := pooltest.Private(t, u.WithDefaults(), e.reg, endpoints, pooltest.FastBackoff())
	e.pool = p
	var err error
	e.out, err = outbound.New(outbound.Options{Metrics: e.metrics})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.out.Update(listener(defaultRoutes...), upstream.Set{Private: map[string]*upstream.PrivatePool{"legacy": p}}); err != nil {
		t.Fatal(err)
	}
	e.cc = testkit.Client(t, testkit.Serve(t, grpc.NewServer(e.out.ServerOptions()...), nil))
	return e
}

func (e *env) invoke(ctx context.Context, method string, body []byte, opts ...grpc.CallOption) ([]byte, error) {
	var out []byte
	err := e.cc.Invoke(ctx, method, body, &out, opts...)
	return out, err
}

func tctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestBodyAndMetadataTravel(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{EchoExt: true}, 2, 1)
	ctx := metadata.AppendToOutgoingContext(tctx(t, 2*time.Second),
		"x-mgp-uin", "4242", "x-mgp-caller", "svc-a",
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"x-mgp-ext-32769-bin", "\x00\x01binary", "x-mgp-ext-40000-bin", "two")
	var hdr metadata.MD
	body := []byte("hello\x00world")
	out, err := e.invoke(ctx, "/test.Echo/Echo", body, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(body) {
		t.Fatalf("body %q", out)
	}
	f, ok := e.seen.get(string(body))
	if !ok {
		t.Fatal("backend saw nothing")
	}
	if f.UIN != 4242 || f.Cmd != legacy.CmdEcho {
		t.Fatalf("uin/cmd %d/%d", f.UIN, f.Cmd)
	}
	want := map[uint16]string{
		codec.ExtCaller: "svc-a", codec.ExtTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		32769: "\x00\x01binary", 40000: "two",
	}
	for k, v := range want {
		if got, _ := f.ExtValue(k); string(got) != v {
			t.Fatalf("ext %d = %q, want %q", k, got, v)
		}
	}
	ms, ok := mgp.Deadline(&f)
	if !ok || ms == 0 || ms > 2000 {
		t.Fatalf("deadline ext %d %v", ms, ok)
	}
	// App extensions come back as response header metadata.
	if v := hdr.Get("x-mgp-ext-32769-bin"); len(v) != 1 || v[0] != "\x00\x01binary" {
		t.Fatalf("header %v", hdr)
	}
	if v := hdr.Get("x-mgp-ext-40000-bin"); len(v) != 1 || v[0] != "two" {
		t.Fatalf("header %v", hdr)
	}
	// Without a client deadline the route timeout travels.
	body2 := []byte("no-deadline")
	if _, err := e.invoke(metadata.AppendToOutgoingContext(context.Background(), "x-mgp-uin", "1"), "/test.Echo/Slow", append([]byte{0, 0, 0, 0}, body2...)); err != nil {
		t.Fatal(err)
	}
	f, _ = e.seen.get(string(append([]byte{0, 0, 0, 0}, body2...)))
	if ms, _ := mgp.Deadline(&f); ms < 2900 || ms > 3000 {
		t.Fatalf("route timeout ext %d", ms)
	}
}

func TestRoutingAndBadInput(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	ctx := tctx(t, 5*time.Second)
	out, err := e.invoke(ctx, "/test.Upper/Anything", []byte("abc"))
	if err != nil || string(out) != "ABC" {
		t.Fatalf("wildcard route: %q %v", out, err)
	}
	cases := []struct {
		method string
		md     []string
		code   codes.Code
	}{
		{"/test.Other/Echo", nil, codes.Unimplemented},
		{"/test.Echo/Nope", nil, codes.Unimplemented},
		{"/test.Echo/Missing", nil, codes.Unimplemented}, // backend result 1
		{"/test.Echo/..", nil, codes.InvalidArgument},
		{"/../Echo", nil, codes.InvalidArgument},
		{"/test.Echo/a/b", nil, codes.InvalidArgument},
		{"/test.Upper/*", nil, codes.InvalidArgument},
		{"/test.Echo/Echo", []string{"x-mgp-uin", "-1"}, codes.InvalidArgument},
		{"/test.Echo/Echo", []string{"x-mgp-uin", "12abc"}, codes.InvalidArgument},
		{"/test.Echo/Echo", []string{"x-mgp-ext-12-bin", "x"}, codes.InvalidArgument},
	}
	for _, c := range cases {
		cctx := ctx
		if c.md != nil {
			cctx = metadata.AppendToOutgoingContext(ctx, c.md...)
		}
		_, err := e.invoke(cctx, c.method, []byte("x"))
		if status.Code(err) != c.code {
			t.Errorf("%s %v: got %v, want %v", c.method, c.md, err, c.code)
		}
	}
}

func TestStatusTableRoundTrip(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	ctx := tctx(t, 5*time.Second)
	for _, result := range []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 65535} {
		body := binary.BigEndian.AppendUint16(nil, result)
		msg := "failure " + strconv.Itoa(int(result))
		body = append(body, msg...)
		var trl metadata.MD
		_, err := e.invoke(ctx, "/test.Echo/Fail", body, grpc.Trailer(&trl))
		st, _ := status.FromError(err)
		wantCode, app := codec.GRPCCode(result)
		if uint32(st.Code()) != wantCode || st.Message() != msg {
			t.Errorf("result %d: got %v %q, want code %d", result, st.Code(), st.Message(), wantCode)
		}
		var appResult uint16
		if v := trl.Get("x-mgp-result"); len(v) == 1 {
			n, _ := strconv.Atoi(v[0])
			appResult = uint16(n)
		}
		if app != (appResult != 0) {
			t.Errorf("result %d: trailer %v", result, trl)
		}
		if back := codec.ResultFor(uint32(st.Code()), appResult); back != result {
			t.Errorf("result %d came back as %d", result, back)
		}
	}
	// A failure without a message gets a generic one.
	_, err := e.invoke(ctx, "/test.Echo/Fail", []byte{0, 8})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() == "" {
		t.Fatalf("got %v", err)
	}
	// OK row.
	if _, err := e.invoke(ctx, "/test.Echo/Fail", []byte{0, 0}); err != nil {
		t.Fatalf("result 0: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := e.invoke(ctx, "/test.Echo/Slow", []byte{0, 0, 0x03, 0xe8, 'd'}) // 1000 ms
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v", err)
	}
	if el := time.Since(t0); el > 500*time.Millisecond {
		t.Fatalf("deadline honoured after %v", el)
	}
	// The caller may give up before the backend has read the frame (a
	// loaded machine): wait for it.
	f, ok := e.seen.get("\x00\x00\x03\xe8d")
	for wait := time.Now().Add(3 * time.Second); !ok && time.Now().Before(wait); {
		time.Sleep(5 * time.Millisecond)
		f, ok = e.seen.get("\x00\x00\x03\xe8d")
	}
	if ms, _ := mgp.Deadline(&f); ms == 0 || ms > 80 {
		t.Fatalf("deadline ext %d", ms)
	}
	// The slot was freed; the late reply is dropped and counted.
	testkit.Await(3*time.Second, func() bool { return e.pool.Stats().Late != 0 })
	if st := e.pool.Stats(); st.Late != 1 || st.InFlight != 0 {
		t.Fatalf("pool stats %+v", st)
	}
}

func TestBackendKilledAndRecovers(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 2, 1)
	ctx := tctx(t, 10*time.Second)
	errc := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := e.invoke(cctx, "/test.Echo/Slow", []byte{0, 0, 0x13, 0x88}) // 5 s
		errc <- err
	}()
	for e.pool.Stats().InFlight == 0 {
		time.Sleep(time.Millisecond)
	}
	t0 := time.Now()
	e.backend.Close()
	err := <-errc
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v", err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("UNAVAILABLE after %v", el)
	}
	for e.pool.Stats().Healthy != 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := e.invoke(ctx, "/test.Echo/Echo", []byte("x")); status.Code(err) != codes.Unavailable {
		t.Fatalf("no backend: %v", err)
	}
	testkit.Legacy(t, testkit.Listen(t, e.addr), nil, legacy.ServerOptions{}) // a just-closed port: Listen retries
	if err := e.pool.WaitHealthy(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if out, err := e.invoke(ctx, "/test.Echo/Echo", []byte("back")); err != nil || string(out) != "back" {
		t.Fatalf("after recovery: %q %v", out, err)
	}
}

func TestHotSwapKeepsInFlightTable(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	ctx := tctx(t, 5*time.Second)
	errc := make(chan error, 1)
	go func() {
		_, err := e.invoke(ctx, "/test.Echo/Slow", []byte{0, 0, 0, 200})
		errc <- err
	}()
	for e.pool.Stats().InFlight == 0 {
		time.Sleep(time.Millisecond)
	}
	// New table: Slow is gone, Echo now uppercases.
	err := e.out.Update(listener(config.Route{Method: "/test.Echo/Echo", Cmd: legacy.CmdUppercase, Upstream: "legacy"}),
		upstream.Set{Private: map[string]*upstream.PrivatePool{"legacy": e.pool}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("in-flight call on old table: %v", err)
	}
	if out, err := e.invoke(ctx, "/test.Echo/Echo", []byte("abc")); err != nil || string(out) != "ABC" {
		t.Fatalf("new table: %q %v", out, err)
	}
	if _, err := e.invoke(ctx, "/test.Echo/Slow", []byte{0, 0, 0, 0}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("removed route: %v", err)
	}
	// A bad table is rejected and the current one keeps serving.
	if err := e.out.Update(listener(config.Route{Method: "/x.Y/Z", Upstream: "nope"}), upstream.Set{}); !errors.Is(err, outbound.ErrConfig) {
		t.Fatalf("bad update: %v", err)
	}
	if out, err := e.invoke(ctx, "/test.Echo/Echo", []byte("abc")); err != nil || string(out) != "ABC" {
		t.Fatalf("after rejected update: %q %v", out, err)
	}
	if n := testutil.CollectAndCount(e.reg, "meshgate_requests_total"); n < 2 {
		t.Fatalf("metrics series %d", n)
	}
}

// TestStressCorrelation: many concurrent calls over several connections to
// several backends with random delays (out-of-order replies); every reply
// must be the one for its request.
func TestStressCorrelation(t *testing.T) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("MESHGATE_STRESS_N")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(t, legacy.ServerOptions{Jitter: time.Millisecond, EchoExt: true, OnRequest: func(*codec.Frame) {}}, 3, 2)
	ctx := tctx(t, 60*time.Second+time.Duration(n)*time.Millisecond)
	var next, bad, errs atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				body := []byte(fmt.Sprintf("req-%d", i))
				uin := strconv.FormatInt(i, 10)
				var hdr metadata.MD
				cctx := metadata.AppendToOutgoingContext(ctx, "x-mgp-uin", uin, "x-mgp-ext-40001-bin", uin)
				out, err := e.invoke(cctx, "/test.Echo/Echo", body, grpc.Header(&hdr))
				if err != nil {
					errs.Add(1)
					continue
				}
				if string(out) != string(body) || len(hdr.Get("x-mgp-ext-40001-bin")) != 1 || hdr.Get("x-mgp-ext-40001-bin")[0] != uin {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d calls, %d mismatched, %d errors", n, bad.Load(), errs.Load())
	if bad.Load() != 0 || errs.Load() != 0 {
		t.Fatalf("%d mismatched, %d errors of %d", bad.Load(), errs.Load(), n)
	}
	if st := e.pool.Stats(); st.Unknown != 0 || st.Late != 0 {
		t.Fatalf("pool %+v", st)
	}
}
