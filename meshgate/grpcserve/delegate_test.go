package grpcserve

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

func init() { testkit.InstallInteropLogger() }

// fastOnly serves /t.S/M (echo) on the fast path and delegates the rest.
type fastOnly struct{ fast atomic.Int64 }

func (h *fastOnly) Start(c *Call)           { h.fast.Add(1); echo(c) }
func (h *fastOnly) Fast(method string) bool { return method == "/t.S/M" }

// startHybrid starts a server whose fast path serves /t.S/M and whose
// Fallback is a real grpc-go server with grpc-go's interop TestService
// and a health server.
func startHybrid(t *testing.T, mod func(*Config)) (*testServer, *fastOnly, *health.Server, *grpc.Server) {
	t.Helper()
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, interop.NewTestServer())
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	t.Cleanup(gs.Stop)
	h := &fastOnly{}
	ts := start(t, h, func(c *Config) {
		c.Fallback = gs
		if mod != nil {
			mod(c)
		}
	})
	return ts, h, hs, gs
}

func dialPlain(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestDelegatedInterop: grpc-go's interop client's full case list on one
// connection of a hybrid server: every TestService method is delegated to
// grpc-go's server (streams in both directions, cancellation, deadlines,
// metadata, statuses, unknown methods), while /t.S/M calls on the same
// connection stay on the fast path.
func TestDelegatedInterop(t *testing.T) {
	ts, h, _, _ := startHybrid(t, nil)
	cc := dialPlain(t, ts.addr)
	tc := testgrpc.NewTestServiceClient(cc)
	fast := dial(t, ts.addr) // the raw codec, for /t.S/M
	cases := testkit.InteropCases(tc, cc)
	for _, c := range cases {
		testkit.RunInteropCase(t, c.Name, func(_ *testing.T, ctx context.Context) { c.Run(ctx) })
		var resp []byte
		if err := fast.Invoke(ctxT(t, 5*time.Second), "/t.S/M", &[]byte{1, 2}, &resp); err != nil || len(resp) != 2 {
			t.Fatalf("fast call after %s: %v %v", c.Name, resp, err)
		}
	}
	if n := h.fast.Load(); n != int64(len(cases)) {
		t.Fatalf("fast path served %d calls, want %d (every delegated call must bypass it)", n, len(cases))
	}
	testkit.Within(t, 5*time.Second, "no call in flight", func() bool { return ts.inflight() == 0 })
}

// TestDelegatedHealthWatchAndDrain: a grpc-go client's health Watch (a
// server stream) is delegated: it receives SERVING, then NOT_SERVING;
// Shutdown sends GOAWAY and waits for the open Watch until its context
// ends (bounded), then closes it.
func TestDelegatedHealthWatchAndDrain(t *testing.T) {
	ts, _, hs, _ := startHybrid(t, nil)
	cc := dialPlain(t, ts.addr)
	ctx := ctxT(t, 10*time.Second)
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first: %v %v", r, err)
	}
	hs.Shutdown() // every service NOT_SERVING
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second: %v %v", r, err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with an open Watch: %v, want the deadline (it waits for the stream)", err)
	}
	if _, err := w.Recv(); err == nil {
		t.Fatal("Watch still open after Shutdown")
	}
}

// TestDelegatedRSTEndsHandler: a client cancelling a server stream it
// reads from cancels the delegated handler's context; the stream's
// goroutines end (in-flight count back to 0; goleak at TestMain).
func TestDelegatedRSTEndsHandler(t *testing.T) {
	ts, _, _, _ := startHybrid(t, nil)
	cc := dialPlain(t, ts.addr)
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithCancel(ctxT(t, 10*time.Second))
	params := make([]*testgrpc.ResponseParameters, 50)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: 1 << 10, IntervalUs: 100000} // 5 s in all
	}
	st, err := tc.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	if ts.inflight() != 1 {
		t.Fatalf("in flight %d, want 1", ts.inflight())
	}
	cancel()
	testkit.Within(t, 3*time.Second, "delegated stream ended", func() bool { return ts.inflight() == 0 })
}

// TestDelegatedNoWriteIsReset: a Fallback that returns without writing
// gets RST_STREAM INTERNAL_ERROR (a grpc-go client sees INTERNAL).
func TestDelegatedNoWriteIsReset(t *testing.T) {
	ts := start(t, &fastOnly{}, func(c *Config) {
		c.Fallback = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	})
	rc := rawDial(t, ts.addr)
	req := reqWith(":path", "/t.S/Other")
	rc.headers(1, true, req...)
	f, err := rc.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
	if err != nil {
		t.Fatal(err)
	}
	if code := f.(*http2.RSTStreamFrame).ErrCode; code != http2.ErrCodeInternal {
		t.Fatalf("RST code %v", code)
	}
	var resp []byte
	err = dial(t, ts.addr).Invoke(ctxT(t, 5*time.Second), "/t.S/Other", &[]byte{1}, &resp)
	if status.Code(err) != codes.Internal {
		t.Fatalf("grpc-go client: %v", err)
	}
	testkit.Within(t, 3*time.Second, "stream ended", func() bool { return ts.inflight() == 0 })
}

// TestDelegatedStalledReaders: a client opens delegated server streams up
// to MAX_CONCURRENT_STREAMS and never reads (no WINDOW_UPDATE): the next
// stream is refused, the stalled streams' writes stop at the windows and
// are reset after WriteTimeout; meanwhile another client's calls (fast
// and delegated) are served.
func TestDelegatedStalledReaders(t *testing.T) {
	ts, _, _, _ := startHybrid(t, func(c *Config) {
		c.MaxConcurrentStreams = 4
		c.WriteTimeout = 500 * time.Millisecond
	})
	rc := rawDial(t, ts.addr)
	// StreamingOutputCall asking for 4 × 64 KiB: more than a 64 KiB window.
	p := &testgrpc.ResponseParameters{Size: 64 << 10}
	body, err := proto.Marshal(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{p, p, p, p}})
	if err != nil {
		t.Fatal(err)
	}
	hdr := reqWith(":path", "/grpc.testing.TestService/StreamingOutputCall")
	for i := range 5 {
		id := uint32(2*i + 1)
		rc.headers(id, false, hdr...)
		_ = rc.fr.WriteData(id, true, msg(body))
	}
	// The fifth is refused.
	if _, err := rc.until(func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == 9 && r.ErrCode == http2.ErrCodeRefusedStream
	}); err != nil {
		t.Fatal(err)
	}
	testkit.Within(t, 3*time.Second, "four delegated streams", func() bool { return ts.inflight() == 4 })
	// Another client is served meanwhile.
	cc := dialPlain(t, ts.addr)
	ctx := ctxT(t, 5*time.Second)
	testkit.RunInteropCase(t, "large_unary_meanwhile", func(_ *testing.T, ctx context.Context) {
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	})
	var resp []byte
	if err := dial(t, ts.addr).Invoke(ctx, "/t.S/M", &[]byte{7}, &resp); err != nil {
		t.Fatal(err)
	}
	// The stalled streams are reset after the write timeout.
	resets := 0
	for resets < 4 {
		f, err := rc.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
		if err != nil {
			t.Fatalf("after %d resets: %v", resets, err)
		}
		if r := f.(*http2.RSTStreamFrame); r.ErrCode == http2.ErrCodeCancel {
			resets++
		}
	}
	testkit.Within(t, 3*time.Second, "stalled streams ended", func() bool { return ts.inflight() == 0 })
	if n := testutil.ToFloat64(ts.errs.WithLabelValues("l", ReasonStalled)); n != 4 {
		t.Fatalf("stalled count %v", n)
	}
}

// TestDelegatedRequestWindow: a client sending more than the stream's
// receive window to a delegated stream whose handler does not read is
// reset FLOW_CONTROL; the connection stays.
func TestDelegatedRequestWindow(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ts := start(t, &fastOnly{}, func(c *Config) {
		c.StreamWindow = 65535
		c.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select { // holds the body unread
			case <-release:
			case <-r.Context().Done():
			}
		})
	})
	rc := rawDial(t, ts.addr)
	hdr := reqWith(":path", "/t.S/Stream")
	rc.headers(1, false, hdr...)
	chunk := make([]byte, 16384)
	for range 4 {
		_ = rc.fr.WriteData(1, false, chunk) // 65536 > 65535
	}
	f, err := rc.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
	if err != nil {
		t.Fatal(err)
	}
	if code := f.(*http2.RSTStreamFrame).ErrCode; code != http2.ErrCodeFlowControl {
		t.Fatalf("RST %v", code)
	}
	rc.wantOK(3, "after the reset")
	testkit.Within(t, 3*time.Second, "stream ended", func() bool { return ts.inflight() == 0 })
}

// TestDelegatedTLSPeer: over mTLS, a delegated call's grpc-go handler sees
// the client's certificate (credentials.TLSInfo from Request.TLS) and the
// peer's address, as on grpc-go's own transport.
func TestDelegatedTLSPeer(t *testing.T) {
	tc, files := h2TLS(t)
	var got atomic.Value
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		if name, addr := peerCN(st.Context()); name != "" {
			got.Store(name + " " + addr.String())
		}
		var m []byte
		if err := st.RecvMsg(&m); err != nil {
			return err
		}
		return st.SendMsg(m)
	}), grpc.ForceServerCodecV2(rawcodec.Codec{}))
	t.Cleanup(gs.Stop)
	ts := start(t, &fastOnly{}, func(c *Config) { c.TLS, c.Fallback = tc, gs })
	tlsEcho(t, ts.addr, files["client"], "/t.S/Delegated")
	v, _ := got.Load().(string)
	if !strings.HasPrefix(v, "client 127.0.0.1:") {
		t.Fatalf("delegated handler saw peer %q", v)
	}
}

// BenchmarkUnaryHybrid is BenchmarkUnary with a Fallback and a FastPath
// handler: the fast path's cost with delegation configured (compare
// allocs/op with BenchmarkUnary: the Fast check adds none).
func BenchmarkUnaryHybrid(b *testing.B) {
	gs := grpc.NewServer()
	defer gs.Stop()
	benchUnary(b, Config{Name: "l", Handler: &fastOnly{}, Blocking: true, Fallback: gs})
}

// BenchmarkDelegatedUnary: a 1 KB unary call delegated to the Fallback
// (a grpc-go server whose unknown-service handler echoes raw bytes): the
// delegated path's cost per call (compare allocs/op with BenchmarkUnary).
func BenchmarkDelegatedUnary(b *testing.B) {
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}), grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		var m rawcodec.Message
		if err := st.RecvMsg(&m); err != nil {
			return err
		}
		defer m.Free()
		return st.SendMsg(&m)
	}))
	defer gs.Stop()
	ts := start(b, &fastOnly{}, func(c *Config) { c.Fallback = gs })
	cc := dial(b, ts.addr)
	req := make([]byte, 1024)
	var resp []byte
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-mgp-uin", "42")
	b.ReportAllocs()
	for b.Loop() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := cc.Invoke(cctx, "/x.Y/Z", req, &resp); err != nil {
			b.Fatal(err)
		}
		cancel()
		if len(resp) != len(req) {
			b.Fatalf("%d bytes back", len(resp))
		}
	}
}

// TestDelegatedMetadataValues: a delegated call's metadata reaches the
// Fallback whole: a key sent several times keeps every value in order,
// and the keys around it (whose values share one backing array) keep
// theirs; the peer address is the client's on every call of the
// connection.
func TestDelegatedMetadataValues(t *testing.T) {
	type seen struct {
		md   metadata.MD
		peer string
	}
	got := make(chan seen, 2)
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(st.Context())
		p, _ := peer.FromContext(st.Context())
		got <- seen{md, p.Addr.String()}
		var m []byte
		if err := st.RecvMsg(&m); err != nil {
			return err
		}
		return st.SendMsg(m)
	}), grpc.ForceServerCodecV2(rawcodec.Codec{}))
	t.Cleanup(gs.Stop)
	ts := start(t, &fastOnly{}, func(c *Config) { c.Fallback = gs })
	cc := dial(t, ts.addr)
	for i := range 2 {
		ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-one", "1", "x-multi", "a", "x-multi", "b", "x-two", "2", "x-multi", "c")
		var out []byte
		if err := cc.Invoke(ctx, "/t.S/Delegated", []byte{byte(i)}, &out); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		s := <-got
		if v := s.md.Get("x-multi"); strings.Join(v, ",") != "a,b,c" {
			t.Errorf("call %d: x-multi %q", i, v)
		}
		if v1, v2 := s.md.Get("x-one"), s.md.Get("x-two"); len(v1) != 1 || v1[0] != "1" || len(v2) != 1 || v2[0] != "2" {
			t.Errorf("call %d: x-one %q, x-two %q", i, v1, v2)
		}
		if !strings.HasPrefix(s.peer, "127.0.0.1:") {
			t.Errorf("call %d: peer %q", i, s.peer)
		}
	}
}
