package inbound

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// benchEnv is env for benchmarks (no *testing.T cleanup helpers).
func benchEnv(b *testing.B) *env {
	return newEnvTB(b)
}

// BenchmarkBridgeSerial: one MGP client, one request at a time: frame →
// inbound → unary gRPC (loopback, demo Echo) → frame. Allocations include
// the in-process grpc-go client and server; compare with
// BenchmarkGRPCDirectSerial to see MeshGate's own share.
func BenchmarkBridgeSerial(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(byteSize(size), func(b *testing.B) {
			e := benchEnv(b)
			nc, err := net.Dial("tcp", e.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			req := codec.Frame{Cmd: cmdEcho, Seq: 1, UIN: 42, Body: make([]byte, size)}
			wire, _ := e.codec.Append(nil, &req)
			rd := codec.NewReader(nc, e.codec, 64<<10)
			var f codec.Frame
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := nc.Write(wire); err != nil {
					b.Fatal(err)
				}
				if err := rd.ReadFrame(&f); err != nil || f.Result != 0 || len(f.Body) != size {
					b.Fatalf("reply %v %+v", err, f)
				}
			}
		})
	}
}

// BenchmarkBridgePipelined keeps 64 requests in flight on one connection.
func BenchmarkBridgePipelined(b *testing.B) {
	e := benchEnv(b)
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	const window = 64
	var wire []byte
	for i := 0; i < window; i++ {
		req := codec.Frame{Cmd: cmdEcho, Seq: uint32(i + 1), UIN: uint64(i), Body: make([]byte, 16)}
		wire, _ = e.codec.Append(wire, &req)
	}
	rd := codec.NewReader(nc, e.codec, 64<<10)
	var f codec.Frame
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += window {
		if _, err := nc.Write(wire); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < window; j++ {
			if err := rd.ReadFrame(&f); err != nil || f.Result != 0 {
				b.Fatalf("reply %v %+v", err, f)
			}
		}
	}
}

// BenchmarkGRPCDirectSerial is the floor: the same unary call made by a
// grpc-go client straight to the demo service.
func BenchmarkGRPCDirectSerial(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(byteSize(size), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			gs := demo.NewServer()
			go func() { _ = gs.Serve(ln) }()
			defer gs.Stop()
			cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			body := make([]byte, size)
			var req, resp rawcodec.Message
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				req.SetBytes(body)
				if err := cc.Invoke(ctx, demo.MethodEcho, &req, &resp); err != nil {
					b.Fatal(err)
				}
				cancel()
				resp.Free()
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1024 {
		return "1KiB"
	}
	return "16B"
}
