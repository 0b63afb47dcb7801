package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// legacyBackend starts the reference legacy server (extensions echoed)
// and records the cmd, uin, seq and extension keys of every request.
type legacyBackend struct {
	srv  *legacy.Server
	addr string
	mu   sync.Mutex
	seen []codec.Frame // copies: cmd, uin, seq, ext keys and values
}

func startLegacy(t *testing.T) *legacyBackend {
	t.Helper()
	b := &legacyBackend{}
	b.srv, b.addr = testkit.Legacy(t, nil, nil, legacy.ServerOptions{EchoExt: true, OnRequest: func(f *codec.Frame) {
		c := codec.Frame{Cmd: f.Cmd, UIN: f.UIN, Seq: f.Seq}
		for _, e := range f.Ext {
			c.Ext = append(c.Ext, codec.Ext{Key: e.Key, Value: bytes.Clone(e.Value)})
		}
		b.mu.Lock()
		b.seen = append(b.seen, c)
		b.mu.Unlock()
	}})
	return b
}

func (b *legacyBackend) last() codec.Frame {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[len(b.seen)-1]
}

// Private listener → private upstream: the frame is proxied with its body,
// uin and extensions (unknown keys below 0x8000 and application keys
// unchanged, auth never, deadline re-sent), cmd rewritten by the route, the
// upstream's result and reply extensions back with the client's seq, and
// the client's deadline enforced.
func TestPrivateToPrivate(t *testing.T) {
	lb := startLegacy(t)
	rt := start(t, mustParse(t, fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s}
listeners:
  - name: p2p
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 70, upstream: legacy, rewrite_cmd: 2}
      - {cmd: 1, upstream: legacy}
      - {cmd: 3, upstream: legacy}
      - {cmd: 4, upstream: legacy}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 1}
`, lb.addr)))
	cl := dial(t, rt, "p2p", 2)
	ctx := testkit.Context(t, 5*time.Second)

	// Body, uin, cmd rewrite, extensions.
	exts := []codec.Ext{
		{Key: codec.ExtTraceparent, Value: []byte("00-abc-def-01")},
		{Key: 0x0100, Value: []byte("unknown-below-0x8000")},
		{Key: 0x8001, Value: []byte{0, 1, 2}},
	}
	resp, err := cl.Call(ctx, 70, 4242, []byte("shout"), exts)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Result != 0 || string(resp.Body) != "SHOUT" || resp.Cmd != 70 || resp.UIN != 4242 {
		t.Fatalf("reply: result %d body %q cmd %d uin %d", resp.Result, resp.Body, resp.Cmd, resp.UIN)
	}
	got := lb.last()
	if got.Cmd != 2 || got.UIN != 4242 {
		t.Fatalf("upstream saw cmd %d uin %d, want cmd 2 (rewritten) uin 4242", got.Cmd, got.UIN)
	}
	for _, e := range exts {
		if v, ok := got.ExtValue(e.Key); !ok || !bytes.Equal(v, e.Value) {
			t.Errorf("upstream request ext %#x = %q, %v; want %q", e.Key, v, ok, e.Value)
		}
		if v, ok := resp.ExtValue(e.Key); !ok || !bytes.Equal(v, e.Value) {
			t.Errorf("reply ext %#x = %q, %v; want %q", e.Key, v, ok, e.Value)
		}
	}
	if v, ok := got.ExtValue(codec.ExtDeadline); !ok || len(v) != 4 || binary.BigEndian.Uint32(v) == 0 || binary.BigEndian.Uint32(v) > 2000 {
		t.Errorf("upstream request deadline ext = %v, %v; want the remaining ms (<= 2000)", v, ok)
	}

	// Errors: the upstream's result and message come back unchanged.
	resp, err = cl.Call(ctx, 3, 1, append([]byte{0, 101}, "app says no"...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if msg, _ := resp.ExtValue(codec.ExtErrorMsg); resp.Result != 101 || string(msg) != "app says no" {
		t.Fatalf("failed reply: result %d msg %q", resp.Result, msg)
	}
	// The same metrics as every other path: an application result counts
	// as UNKNOWN (docs/protocol.md), success as OK.
	// Per endpoint, the pool counts what it sent.
	if got := testutil.ToFloat64(rt.Metrics().UpstreamRequests.WithLabelValues("legacy", lb.addr, "Unknown")); got != 1 {
		t.Errorf(`meshgate_upstream_requests_total{upstream="legacy",endpoint=%q,code="Unknown"} = %v, want 1`, lb.addr, got)
	}
	// (A private listener counts just after writing the reply: poll.)
	waitFor(t, func() bool {
		return testutil.ToFloat64(rt.Metrics().Requests.WithLabelValues("p2p", "3", "legacy", "Unknown")) == 1 &&
			testutil.ToFloat64(rt.Metrics().Requests.WithLabelValues("p2p", "70", "legacy", "OK")) == 1
	})

	// The client's deadline (ext 3, 100ms) bounds a slow upstream: result 5.
	var dl [4]byte
	binary.BigEndian.PutUint32(dl[:], 100)
	slow := binary.BigEndian.AppendUint32(nil, 3000)
	start := time.Now()
	resp, err = cl.Call(ctx, 4, 1, slow, []codec.Ext{{Key: codec.ExtDeadline, Value: dl[:]}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Result != codec.ResultTimeout || time.Since(start) > 2*time.Second {
		t.Fatalf("slow call: result %d after %v; want 5 after ~100ms", resp.Result, time.Since(start))
	}

	// A ONEWAY frame is proxied with ONEWAY and gets no reply.
	if err := cl.Send(ctx, 1, 5, []byte("fire"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return lb.srv.Stats().Oneway == 1 })

	// MeshGate assigns seq on the pooled upstream connection: two raw
	// clients using the same seq at once over the one upstream connection
	// both get their own reply with their seq.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	mc := mgp.New(0)
	for i := range 2 {
		nc, err := net.Dial("tcp", rt.Addr("p2p").String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		body := binary.BigEndian.AppendUint32(nil, 50)
		body = append(body, byte('a'+i))
		wire, err := mc.Append(nil, &codec.Frame{Cmd: 4, Seq: 77, UIN: 1, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := nc.Write(wire); err != nil {
				errs <- err
				return
			}
			var r codec.Frame
			if err := codec.NewReader(nc, mc, 4096).ReadFrame(&r); err != nil {
				errs <- err
				return
			}
			if r.Seq != 77 || r.Result != 0 || !bytes.Equal(r.Body, body) {
				errs <- fmt.Errorf("client %d: seq %d result %d body %q", i, r.Seq, r.Result, r.Body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// grpcBackend is a gRPC server with the demo service and test.Px methods
// that show what a proxy passed through.
func grpcBackend(t *testing.T) string {
	t.Helper()
	return (&testkit.Stub{Services: map[string]map[string]demo.Handler{"test.Px": {
		// Headers answers with header x-h and trailer x-t, and the
		// request's x-in and x-mgp-key-id values as its body.
		"Headers": func(ctx context.Context, _ []byte) ([]byte, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			_ = grpc.SetHeader(ctx, metadata.Pairs("x-h", "hv"))
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-t", "tv"))
			return []byte(strings.Join(md.Get("x-in"), ",") + "|" + strings.Join(md.Get("x-mgp-key-id"), ",")), nil
		},
		// Fail fails with FAILED_PRECONDITION and a trailer.
		"Fail": func(ctx context.Context, _ []byte) ([]byte, error) {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-why", "because"))
			return nil, status.Error(codes.FailedPrecondition, "not now")
		},
	}}}).Start(t)
}

// gRPC listener → gRPC upstream: a raw-bytes L7 proxy. The method passes
// through (wildcard route) or is rewritten; request metadata goes up and
// response headers and trailers come back, hop-by-hop and x-mgp-key-id
// excepted; status code and message come back unchanged; the caller's
// deadline holds.
func TestGRPCToGRPC(t *testing.T) {
	ep := grpcBackend(t)
	rt := start(t, mustParse(t, fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s}
listeners:
  - name: g2g
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: /test.Shout/Loud, upstream: up, rewrite_method: /demo.Echo/Upper}
      - {method: /demo.Echo/*, upstream: up}
      - {method: /test.Px/*, upstream: up}
upstreams:
  - {name: up, protocol: grpc, endpoints: [%q]}
`, ep)))
	cc := testkit.Client(t, rt.Addr("g2g").String())
	ctx := testkit.Context(t, 5*time.Second)
	invoke := func(ctx context.Context, method, body string, opts ...grpc.CallOption) (string, error) {
		var out []byte
		err := cc.Invoke(ctx, method, []byte(body), &out, opts...)
		return string(out), err
	}

	if out, err := invoke(ctx, demo.MethodEcho, "same bytes"); err != nil || out != "same bytes" {
		t.Fatalf("echo: %q, %v", out, err)
	}
	if out, err := invoke(ctx, "/test.Shout/Loud", "rewrite"); err != nil || out != "REWRITE" {
		t.Fatalf("rewritten method: %q, %v", out, err)
	}

	var hdr, trl metadata.MD
	mctx := metadata.AppendToOutgoingContext(ctx, "x-in", "iv", "x-mgp-key-id", "7")
	out, err := invoke(mctx, "/test.Px/Headers", "", grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatal(err)
	}
	if out != "iv|" {
		t.Errorf("upstream saw x-in|x-mgp-key-id = %q, want \"iv|\" (key id never trusted from a gRPC caller)", out)
	}
	if hdr.Get("x-h") == nil || hdr.Get("x-h")[0] != "hv" || trl.Get("x-t") == nil || trl.Get("x-t")[0] != "tv" {
		t.Errorf("response header %v trailer %v; want x-h=hv and x-t=tv", hdr, trl)
	}

	trl = nil
	_, err = invoke(ctx, "/test.Px/Fail", "", grpc.Trailer(&trl))
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "not now" {
		t.Fatalf("status: %v", err)
	}
	if v := trl.Get("x-why"); len(v) != 1 || v[0] != "because" {
		t.Errorf("error trailer %v; want x-why=because", trl)
	}

	dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer dcancel()
	begin := time.Now()
	_, err = invoke(dctx, demo.MethodSleep, "3s")
	if status.Code(err) != codes.DeadlineExceeded || time.Since(begin) > 2*time.Second {
		t.Fatalf("deadline: %v after %v", err, time.Since(begin))
	}
	if _, err := invoke(ctx, "/other.Svc/M", ""); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unrouted: %v", err)
	}
	// grpc.health.v1 reports a service routed to a connected gRPC
	// upstream as SERVING (it used to look for a private pool only).
	waitFor(t, func() bool { return healthOf(cc, "demo.Echo") == healthpb.HealthCheckResponse_SERVING })
	// One metrics scheme whatever the path. (The server side of a call
	// whose client deadline passed ends a moment after the client, as
	// DeadlineExceeded or, when the client's RST_STREAM wins, Canceled: poll.)
	req := rt.Metrics().Requests
	waitFor(t, func() bool {
		return testutil.ToFloat64(req.WithLabelValues("g2g", "/demo.Echo/*", "up", "DeadlineExceeded"))+
			testutil.ToFloat64(req.WithLabelValues("g2g", "/demo.Echo/*", "up", "Canceled")) == 1
	})
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"g2g", "/test.Px/*", "up", "FailedPrecondition"}, 1},
		{[]string{"g2g", "/test.Shout/Loud", "up", "OK"}, 1},
		{[]string{"g2g", "unmatched", "", "Unimplemented"}, 1},
	} {
		if got := testutil.ToFloat64(req.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("meshgate_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
}

// A private pool dropped by a reload follows the gRPC pools' retire
// policy: it keeps serving the call in flight, then closes as soon as that
// call ends, long before drain_timeout (which only bounds the wait).
func TestRetiredPrivatePoolClosesAfterLastCall(t *testing.T) {
	lb := startLegacy(t)
	y := func(conns int) string {
		return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 5s, drain_timeout: 60s}
listeners:
  - name: p2p
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 4, upstream: legacy}]
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: %d}
`, lb.addr, conns)
	}
	rt := start(t, mustParse(t, y(1)))
	old := rt.Private("legacy")
	cl := dial(t, rt, "p2p", 1)
	ctx := testkit.Context(t, 10*time.Second)
	type result struct {
		f   *codec.Frame
		err error
	}
	res := make(chan result, 1)
	go func() {
		f, err := cl.Call(ctx, 4, 1, binary.BigEndian.AppendUint32(nil, 400), nil)
		res <- result{f, err}
	}()
	// Wait until the call reached the upstream, then drop the pool.
	for lb.srv.Stats().Requests == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("call never reached the upstream")
		case <-time.After(time.Millisecond):
		}
	}
	if err := rt.Reload(mustParse(t, y(2))); err != nil {
		t.Fatal(err)
	}
	if rt.Private("legacy") == old {
		t.Fatal("reload kept the pool")
	}
	select {
	case <-old.Done():
		t.Fatal("retired pool closed while a call was in flight")
	default:
	}
	r := <-res
	if r.err != nil || r.f.Result != 0 {
		t.Fatalf("in-flight call: %v %+v", r.err, r.f)
	}
	testkit.Receive(t, old.Done(), 5*time.Second, "retired pool still open 5s after its last call (drain_timeout is 60s)")
	// The new pool serves.
	if f, err := cl.Call(ctx, 4, 1, binary.BigEndian.AppendUint32(nil, 0), nil); err != nil || f.Result != 0 {
		t.Fatalf("after reload: %v %+v", err, f)
	}
}
