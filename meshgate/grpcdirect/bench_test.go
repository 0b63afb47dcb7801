package grpcdirect

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

type invoker interface {
	Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error
}

// BenchmarkInvoke compares one 1 KB unary call (with metadata, a deadline
// and header/trailer options, as the private → gRPC bridge makes it) over
// the direct transport and over grpc-go's client, against the same
// in-process grpc-go server. ctxsw/op is the process's (client and
// server) voluntary + involuntary context switches per call.
func BenchmarkInvoke(b *testing.B) {
	ln := startBenchServer(b)
	b.Run("direct", func(b *testing.B) {
		e := New(Config{Addr: ln})
		defer e.Close()
		runInvoke(b, e)
	})
	b.Run("direct+metrics", func(b *testing.B) { // grpc-go's client metrics recorded (an SDK MeterProvider)
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer func() { _ = mp.Shutdown(context.Background()) }()
		m, err := NewMetrics(mp, "meshgate:///bench")
		if err != nil {
			b.Fatal(err)
		}
		e := New(Config{Addr: ln, Metrics: m})
		defer e.Close()
		runInvoke(b, e)
	})
	b.Run("grpc-go", func(b *testing.B) {
		cc, err := grpc.NewClient(ln, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})),
			grpc.WithStaticStreamWindowSize(StreamWindow), grpc.WithStaticConnWindowSize(ConnWindow))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runInvoke(b, cc)
	})
}

func startBenchServer(b *testing.B) string {
	return startBackendTB(b, map[string]demo.Handler{"Echo": echo})
}

func runInvoke(b *testing.B, inv invoker) {
	payload := make([]byte, 1024)
	md := metadata.Pairs("x-mgp-uin", "12345", "x-mgp-seq", "7")
	call := func() {
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 3*time.Second)
		var req, resp rawcodec.Message
		req.SetBytes(payload)
		var hdr, trl metadata.MD
		if err := inv.Invoke(ctx, "/"+svc+"/Echo", &req, &resp, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
			b.Fatal(err)
		}
		resp.Free()
		cancel()
	}
	measure(b, call)
}

// measure runs call 100 times to warm up, then b.N times timed, and
// reports allocations and context switches per call.
func measure(b *testing.B, call func()) {
	for range 100 {
		call()
	}
	sw0 := ctxSwitches()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		call()
	}
	b.StopTimer()
	b.ReportMetric(float64(ctxSwitches()-sw0)/float64(b.N), "ctxsw/op")
}

func ctxSwitches() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "voluntary_ctxt_switches:") || strings.HasPrefix(l, "nonvoluntary_ctxt_switches:") {
			v, _ := strconv.ParseInt(strings.TrimSpace(l[strings.Index(l, ":")+1:]), 10, 64)
			n += v
		}
	}
	return n
}

// BenchmarkStart is BenchmarkInvoke's call made with Start: the
// completion runs on the connection's reader and hands the result to the
// benchmark's goroutine over a channel (one hand-off per call that the
// bridge does not make: it writes its reply from the callback).
func BenchmarkStart(b *testing.B) {
	ln := startBenchServer(b)
	e := New(Config{Addr: ln})
	defer e.Close()
	payload := make([]byte, 1024)
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-mgp-uin", "12345", "x-mgp-seq", "7"))
	var req, resp rawcodec.Message
	var hdr, trl metadata.MD
	opts := []grpc.CallOption{grpc.Header(&hdr), grpc.Trailer(&trl)}
	ch := make(chan error, 1)
	done := func(err error) { ch <- err }
	call := func() {
		req.SetBytes(payload)
		e.Start(ctx, "/"+svc+"/Echo", time.Now().Add(3*time.Second), &req, &resp, done, opts...)
		if err := <-ch; err != nil {
			b.Fatal(err)
		}
		resp.Free()
	}
	measure(b, call)
}
