package outbound_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
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
