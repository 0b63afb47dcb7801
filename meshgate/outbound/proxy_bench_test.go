package outbound_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// BenchmarkGRPCProxy: grpc-go client → outbound (gRPC → gRPC route) →
// grpcpool → demo Echo server → back, all in this process. Compare with
// BenchmarkGRPCBaseline (one hop) for what the proxy hop adds.
func BenchmarkGRPCProxy(b *testing.B) {
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	be := demo.NewServer()
	go be.Serve(bln)
	defer be.Stop()
	pool, err := grpcpool.New(config.Upstream{Name: "demo", Protocol: config.ProtoGRPC, Endpoints: []string{bln.Addr().String()}}.WithDefaults(), grpcpool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	out, err := outbound.New(outbound.Options{Metrics: admin.NewMetrics()})
	if err != nil {
		b.Fatal(err)
	}
	l := config.Listener{Name: "g2g", Kind: config.KindGRPC, Routes: []config.Route{
		{Method: "/test.Echo/Echo", Upstream: "demo", Timeout: time.Second, RouteRewrite: config.RouteRewrite{RewriteMethod: demo.MethodEcho}}}}
	if err := out.Update(l, upstream.Set{GRPC: map[string]*grpcpool.Pool{"demo": pool}}); err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(out.ServerOptions()...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pool.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	benchInvoke(b, cc, "/test.Echo/Echo")
}
