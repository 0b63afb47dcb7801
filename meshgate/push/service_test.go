package push

import (
	"context"
	"sync"
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
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/push/pushpb"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve starts a real grpc-go server on 127.0.0.1 with register applied
// and returns a client connection to it.
func serve(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(opts...)
	register(srv)
	return testkit.Dial(t, testkit.Serve(t, srv, nil))
}

func call[Req, Resp any](cc *grpc.ClientConn, method string, req *Req) (*Resp, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp := new(Resp)
	err := cc.Invoke(ctx, method, req, resp)
	return resp, err
}

func TestServiceSendOverGRPC(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(Limits{})
	c, full := &recConn{}, &recConn{full: true}
	r.Attach(c).Learn(100)
	r.Attach(full).Learn(200)
	s := NewService("api", r, m, nil)
	cc := serve(t, func(g *grpc.Server) { s.Register(g) }, grpc.ForceServerCodecV2(rawcodec.Codec{}))

	resp, err := call[pushpb.SendRequest, pushpb.SendResponse](cc, MethodSend, &pushpb.SendRequest{
		Uin: 100, Cmd: 7, Body: []byte("event"), Extensions: []*pushpb.Extension{{Key: 0x8001, Value: []byte("v")}, {Key: 1, Value: []byte("tp")}}})
	if err != nil || resp.GetDelivered() != 1 {
		t.Fatalf("send: %v %v", resp, err)
	}
	got := c.frames()
	if len(got) != 1 {
		t.Fatalf("frames %d", len(got))
	}
	f := got[0]
	if f.Cmd != 7 || f.UIN != 100 || f.Flags != codec.FlagPush || string(f.Body) != "event" || len(f.Ext) != 2 || f.Ext[0].Key != 0x8001 || string(f.Ext[0].Value) != "v" {
		t.Fatalf("pushed frame %+v", f)
	}
	check := func(uin uint64, ext []*pushpb.Extension, want codes.Code) {
		t.Helper()
		_, err := call[pushpb.SendRequest, pushpb.SendResponse](cc, MethodSend, &pushpb.SendRequest{Uin: uin, Cmd: 7, Extensions: ext})
		if status.Code(err) != want {
			t.Fatalf("uin %d: %v, want %v", uin, err, want)
		}
	}
	check(300, nil, codes.NotFound)
	check(200, nil, codes.ResourceExhausted)
	check(0, nil, codes.InvalidArgument)
	check(100, []*pushpb.Extension{{Key: 2, Value: []byte("mac")}}, codes.InvalidArgument)
	check(100, []*pushpb.Extension{{Key: 70000}}, codes.InvalidArgument)

	b, err := call[pushpb.SendBatchRequest, pushpb.SendBatchResponse](cc, MethodSendBatch, &pushpb.SendBatchRequest{Items: []*pushpb.SendRequest{
		{Uin: 100, Cmd: 8}, {Uin: 300, Cmd: 8}, {Uin: 200, Cmd: 8}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.NotFound, codes.ResourceExhausted}
	for i, o := range b.GetOutcomes() {
		if codes.Code(o.GetCode()) != want[i] {
			t.Fatalf("batch outcome %d: %v", i, o)
		}
	}
	for _, tc := range []struct {
		cmd     uint32
		outcome string
		n       float64
	}{{7, OutcomeOK, 1}, {7, OutcomeNotFound, 1}, {7, OutcomeExhausted, 1}, {7, OutcomeInvalid, 3}, {8, OutcomeOK, 1}, {8, OutcomeNotFound, 1}} {
		if v := testutil.ToFloat64(m.vec.WithLabelValues("api", m.cmdLabel(tc.cmd), tc.outcome)); v != tc.n {
			t.Errorf("meshgate_push_total{cmd=%d,outcome=%s} = %v, want %v", tc.cmd, tc.outcome, v, tc.n)
		}
	}
}

func TestServiceAuthorizer(t *testing.T) {
	r := NewRegistry(Limits{})
	r.Attach(&recConn{}).Learn(1)
	deny := func(ctx context.Context, method string) error {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("ok")) == 0 {
			return status.Errorf(codes.PermissionDenied, "denied %s", method)
		}
		return nil
	}
	cc := serve(t, func(g *grpc.Server) { NewService("api", r, nil, deny).Register(g) })
	if _, err := call[pushpb.SendRequest, pushpb.SendResponse](cc, MethodSend, &pushpb.SendRequest{Uin: 1}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("send: %v", err)
	}
	if _, err := call[pushpb.SendBatchRequest, pushpb.SendBatchResponse](cc, MethodSendBatch, &pushpb.SendBatchRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("batch: %v", err)
	}
}

func TestMetricsCmdLabelsBounded(t *testing.T) {
	m, _ := NewMetrics(nil)
	for i := range 1000 {
		m.Inc("l", uint32(i), OutcomeOK)
	}
	if len(m.cmds) != maxCmdLabels || m.cmdLabel(5000) != otherCmd || m.cmdLabel(3) != "3" {
		t.Fatalf("labels: %d", len(m.cmds))
	}
}

// blockServer answers every raw call after release is closed.
type blockServer struct {
	mu      sync.Mutex
	got     []string
	entered chan struct{}
	release chan struct{}
}

func (b *blockServer) handle(_ any, ss grpc.ServerStream) error {
	var body []byte
	if err := ss.RecvMsg(&body); err != nil {
		return err
	}
	md, _ := metadata.FromIncomingContext(ss.Context())
	b.mu.Lock()
	b.got = append(b.got, string(body)+"|"+md.Get("x-mgp-uin")[0]+"|"+md.Get(MDPushCmd)[0]+"|"+md.Get("x-mgp-ext-32769-bin")[0])
	b.mu.Unlock()
	b.entered <- struct{}{}
	<-b.release
	return ss.SendMsg([]byte{})
}

// TestForwarderToGRPCBoundedAndDropped: pushes from an upstream go to a real
// gRPC server with the frame's uin, cmd and extensions as metadata; beyond
// max_concurrency calls in flight a push is dropped and counted, never
// queued.
func TestForwarderToGRPCBoundedAndDropped(t *testing.T) {
	bs := &blockServer{entered: make(chan struct{}, 8), release: make(chan struct{})}
	cc := serve(t, func(g *grpc.Server) {}, grpc.UnknownServiceHandler(bs.handle), grpc.ForceServerCodecV2(rawcodec.Codec{}))
	m, _ := NewMetrics(nil)
	w := ToGRPC("legacy", cc, "/game.Events/OnPush", 5*time.Second, 2, m, nil, grpc.ForceCodecV2(rawcodec.Codec{}))
	f := &codec.Frame{Cmd: 9, UIN: 77, Flags: codec.FlagPush, Body: []byte("b"), Ext: []codec.Ext{{Key: 0x8001, Value: []byte("x")}}}
	w.Handle(f)
	w.Handle(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 2 {
		select {
		case <-bs.entered:
		case <-ctx.Done():
			t.Fatal("calls did not arrive")
		}
	}
	w.Handle(f) // both slots busy: dropped
	if v := testutil.ToFloat64(m.vec.WithLabelValues("upstream:legacy", "9", OutcomeDropped)); v != 1 {
		t.Fatalf("dropped = %v", v)
	}
	close(bs.release)
	for w.InFlight() > 0 {
		select {
		case <-ctx.Done():
			t.Fatal("calls did not finish")
		case <-time.After(time.Millisecond):
		}
	}
	if v := testutil.ToFloat64(m.vec.WithLabelValues("upstream:legacy", "9", OutcomeOK)); v != 2 {
		t.Fatalf("ok = %v", v)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.got) != 2 || bs.got[0] != "b|77|9|x" {
		t.Fatalf("server got %q", bs.got)
	}
}

func TestForwarderToDownstream(t *testing.T) {
	r := NewRegistry(Limits{})
	c := &recConn{}
	r.Attach(c).Learn(5)
	m, _ := NewMetrics(nil)
	w := ToDownstream("legacy", r, m)
	w.Handle(&codec.Frame{Cmd: 3, UIN: 5, Flags: codec.FlagPush, Body: []byte("p")})
	w.Handle(&codec.Frame{Cmd: 3, UIN: 6, Flags: codec.FlagPush})
	if len(c.frames()) != 1 || string(c.frames()[0].Body) != "p" {
		t.Fatalf("frames %v", c.frames())
	}
	if testutil.ToFloat64(m.vec.WithLabelValues("upstream:legacy", "3", OutcomeOK)) != 1 || testutil.ToFloat64(m.vec.WithLabelValues("upstream:legacy", "3", OutcomeNotFound)) != 1 {
		t.Fatal("counts")
	}
}
