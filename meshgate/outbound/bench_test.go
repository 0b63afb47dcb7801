package outbound_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/grpcserve"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// BenchmarkOutbound: grpc-go client → outbound → pool → legacy server
// (echo, 128 B) → back, all in this process. Compare allocs/op with
// BenchmarkGRPCBaseline (grpc-go alone, handler echoing the raw message)
// to get what the bridge adds.
func BenchmarkOutbound(b *testing.B) {
	e := newEnv(b, legacy.ServerOptions{OnRequest: func(*codec.Frame) {}}, 2, 1)
	benchInvoke(b, e.cc, "/test.Echo/Echo")
}

func BenchmarkGRPCBaseline(b *testing.B) {
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}), grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		var m rawcodec.Message
		if err := st.RecvMsg(&m); err != nil {
			return err
		}
		out := append([]byte(nil), m.Bytes()...)
		m.Free()
		return st.SendMsg(out)
	}))
	cc := testkit.Client(b, testkit.Serve(b, gs, nil))
	benchInvoke(b, cc, "/test.Echo/Echo")
}

// BenchmarkGRPCProxy: grpc-go client → outbound (gRPC → gRPC route) →
// grpcpool → demo Echo server → back, all in this process. Compare with
// BenchmarkGRPCBaseline (one hop) for what the proxy hop adds.
func BenchmarkGRPCProxy(b *testing.B) {
	pool := pooltest.GRPC(b, config.Upstream{Name: "demo", Protocol: config.ProtoGRPC, Endpoints: []string{testkit.Demo(b)}}.WithDefaults(), grpcpool.Options{})
	out, err := outbound.New(outbound.Options{Metrics: admin.NewMetrics()})
	if err != nil {
		b.Fatal(err)
	}
	l := config.Listener{Name: "g2g", Kind: config.KindGRPC, Routes: []config.Route{
		{Method: "/test.Echo/Echo", Upstream: "demo", Timeout: time.Second, RouteRewrite: config.RouteRewrite{RewriteMethod: demo.MethodEcho}}}}
	if err := out.Update(l, upstream.Set{GRPC: map[string]*grpcpool.Pool{"demo": pool}}); err != nil {
		b.Fatal(err)
	}
	cc := testkit.Client(b, testkit.Serve(b, grpc.NewServer(out.ServerOptions()...), nil))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pool.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	benchInvoke(b, cc, "/test.Echo/Echo")
}

func benchInvoke(b *testing.B, cc *grpc.ClientConn, method string) {
	body := make([]byte, 128)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-mgp-uin", "12345", "x-mgp-caller", "bench")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		var out []byte
		for b.Loop() {
			if err := cc.Invoke(ctx, method, body, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			var out []byte
			for pb.Next() {
				if err := cc.Invoke(ctx, method, body, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkDirectPrivate: the S6 path in one process: grpc-go client →
// grpcserve (the direct server transport) → DirectHandler (TryStart on
// the reading goroutine) → private pool (StartPolicy) → privconn → legacy
// echo backend over TCP → back, 128 B, serial calls on one connection.
// allocs/op counts both ends (grpc-go's client, the backend); the
// MeshGate share is what -memprofile (-memprofilerate 1) attributes to
// meshgate/ frames outside the client and the backend.
func BenchmarkDirectPrivate(b *testing.B) {
	e := newEnv(b, legacy.ServerOptions{OnRequest: func(*codec.Frame) {}}, 1, 1)
	benchDirectPrivate(b, e.out.DirectHandler(nil, nil))
}

// benchDirectPrivate runs serial 128 B echo calls through a direct server
// whose handler is h.
func benchDirectPrivate(b *testing.B, h grpcserve.Handler) {
	gs := grpcserve.New(grpcserve.Config{Name: "grpc-in", Blocking: true, Handler: h})
	ln := testkit.Listen(b, "127.0.0.1:0")
	go func() { _ = gs.Serve(ln) }()
	b.Cleanup(gs.Close)
	cc := testkit.Client(b, ln.Addr().String())
	body := make([]byte, 128)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-mgp-uin", "12345", "x-mgp-caller", "bench")
	var out []byte
	if err := cc.Invoke(ctx, "/test.Echo/Echo", body, &out); err != nil || len(out) != len(body) {
		b.Fatalf("warm-up call: %d bytes, %v", len(out), err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := cc.Invoke(ctx, "/test.Echo/Echo", body, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDirectPrivateWorkers is BenchmarkDirectPrivate with every call
// on a request worker (grpcserve.Handler.Start), the path of a listener
// with telemetry on or a route with retries.
func BenchmarkDirectPrivateWorkers(b *testing.B) {
	e := newEnv(b, legacy.ServerOptions{OnRequest: func(*codec.Frame) {}}, 1, 1)
	benchDirectPrivate(b, struct{ grpcserve.Handler }{e.out.DirectHandler(nil, nil)}) // no TryStart: the workers
}
