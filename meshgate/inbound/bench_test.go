package inbound

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// benchEnv is env for benchmarks (no *testing.T cleanup helpers).
func benchEnv(b *testing.B) *env {
	return newEnvTB(b)
}

// serialLoop is the client side of the serial benchmarks: one MGP/1
// connection to addr, one request at a time (reqs in turn), each reply
// checked (result 0, the request's body size).
func serialLoop(b *testing.B, addr string, c codec.Codec, reqs ...codec.Frame) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	wires := make([][]byte, len(reqs))
	for i := range reqs {
		wires[i], _ = c.Append(nil, &reqs[i])
	}
	size := len(reqs[0].Body)
	rd := codec.NewReader(nc, c, 64<<10)
	var f codec.Frame
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := nc.Write(wires[i%len(wires)]); err != nil {
			b.Fatal(err)
		}
		if err := rd.ReadFrame(&f); err != nil || f.Result != 0 || len(f.Body) != size {
			b.Fatalf("reply %v %+v", err, f)
		}
	}
}

// servePrivate serves srv on 127.0.0.1 until cleanup; it returns the address.
func servePrivate(b *testing.B, srv *Server) string {
	ln := testkit.Listen(b, "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// benchPool is a private pool (no config defaults) of one connection to
// the legacy server at addr.
func benchPool(b *testing.B, name, addr string) *upstream.PrivatePool {
	return pooltest.Private(b, config.Upstream{Name: name, Protocol: config.ProtoPrivate, Endpoints: []string{addr},
		LB: config.LBRoundRobin, Connections: 1, MaxInFlight: 1024, Heartbeat: config.DefaultHeartbeat}, nil, 1)
}

// BenchmarkBridgeSerial: one MGP client, one request at a time: frame →
// inbound → unary gRPC (loopback, demo Echo) → frame. Allocations include
// the in-process grpc-go client and server; compare with
// BenchmarkGRPCDirectSerial to see MeshGate's own share.
func BenchmarkBridgeSerial(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(byteSize(size), func(b *testing.B) {
			e := benchEnv(b)
			serialLoop(b, e.addr, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1, UIN: 42, Body: make([]byte, size)})
		})
	}
}

// BenchmarkBridgeAsyncSerial is BenchmarkBridgeSerial on the path the
// product takes for a one-attempt private → gRPC route (scenario S3): the
// route goes through its upstream's Guard over the direct transport, so
// the connection's reader starts the call (grpcpool.Pool.StartPolicy,
// grpcdirect) and the HTTP/2 connection's reader writes the reply; no
// worker. "sync" is the same table with the asynchronous start turned
// off (the worker + Invoke path a retrying route takes).
func BenchmarkBridgeAsyncSerial(b *testing.B) {
	for _, async := range []bool{true, false} {
		name := "async"
		if !async {
			name = "sync"
		}
		for _, size := range []int{16, 1024} {
			b.Run(name+"/"+byteSize(size), func(b *testing.B) {
				e := newGRPCAsyncEnv(b, async)
				serialLoop(b, e.addr, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1, UIN: 42, Body: make([]byte, size)})
			})
		}
	}
}

// benchP2P is the private-proxy benchmarks' listener: cmd Echo to the
// reference legacy server through a private pool (one multiplexed
// connection), and its codec.
func benchP2P(b *testing.B) (*Server, codec.Codec) {
	_, addr := testkit.Legacy(b, nil, nil, legacy.ServerOptions{})
	pool := benchPool(b, "legacy", addr)
	c := mgp.New(0)
	m := admin.NewMetrics()
	srv := New(Options{Name: "p2p", Codec: c, Metrics: m}, NewTable("p2p", []Route{{Cmd: legacy.CmdEcho, Private: pool, Timeout: config.DefaultTimeout}},
		Limits{MaxInFlight: config.DefaultMaxInFlight, IdleTimeout: config.DefaultIdleTimeout, ReadTimeout: config.DefaultReadTimeout}, nil, m))
	return srv, c
}

// BenchmarkPrivateProxySerial: one MGP client, one request at a time:
// frame → inbound → private pool (one multiplexed connection, MeshGate's
// own seq) → the reference legacy server (Echo) → frame. Allocations
// include the legacy server's and the pool connection's.
func BenchmarkPrivateProxySerial(b *testing.B) {
	srv, c := benchP2P(b)
	serialLoop(b, servePrivate(b, srv), c, codec.Frame{Cmd: legacy.CmdEcho, Seq: 1, UIN: 42, Body: make([]byte, 16)})
}

// BenchmarkPrivateProxySplitSerial is BenchmarkPrivateProxySerial through a
// split route (50 % of users on each of two private pools to the same
// legacy server), with the uin varying per request: the split adds no
// allocation per request.
func BenchmarkPrivateProxySplitSerial(b *testing.B) {
	_, addr := testkit.Legacy(b, nil, nil, legacy.ServerOptions{})
	pools := map[string]*upstream.PrivatePool{}
	for _, n := range []string{"a", "b"} {
		pools[n] = benchPool(b, n, addr)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listeners:
  - name: p2p
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: %d, split: {backends: [{upstream: a}, {upstream: b, percent: 50}]}}
upstreams:
  - {name: a, protocol: private, endpoints: [%q]}
  - {name: b, protocol: private, endpoints: [%q]}
`, legacy.CmdEcho, addr, addr)), "")
	if err != nil {
		b.Fatal(err)
	}
	m := admin.NewMetrics()
	mc := migrate.New(m.Registry, nil)
	gen := mc.Begin()
	tbl, err := TableFromConfig(&cfg.Listeners[0], cfg.Defaults, func(n string) Target { return Target{Private: pools[n]} }, m, WithMigration(mc))
	if err != nil {
		b.Fatal(err)
	}
	mc.Commit(gen)
	c := mgp.New(0)
	reqs := make([]codec.Frame, 64)
	for i := range reqs {
		reqs[i] = codec.Frame{Cmd: legacy.CmdEcho, Seq: 1, UIN: uint64(1000 + i), Body: make([]byte, 16)}
	}
	serialLoop(b, servePrivate(b, New(Options{Name: "p2p", Codec: c, Metrics: m}, tbl)), c, reqs...)
}

// BenchmarkBridgePipelined keeps 64 requests in flight on one connection
// (the workers' path: its table has no Guard).
func BenchmarkBridgePipelined(b *testing.B) { pipelined(b, benchEnv(b)) }

// BenchmarkBridgeAsyncPipelined is BenchmarkBridgePipelined on the S3
// path (BenchmarkBridgeAsyncSerial's table).
func BenchmarkBridgeAsyncPipelined(b *testing.B) { pipelined(b, newGRPCAsyncEnv(b, true)) }

func pipelined(b *testing.B, e *env) {
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
			cc := testkit.Client(b, testkit.Demo(b))
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

// BenchmarkPrivateProxyWorkersSerial is BenchmarkPrivateProxySerial with
// every request on a worker: the client's connection hides its
// *net.TCPConn, as a TLS client's does (the path of TLS clients,
// telemetry, shadow copies and retries).
func BenchmarkPrivateProxyWorkersSerial(b *testing.B) {
	srv, c := benchP2P(b)
	ln := testkit.Listen(b, "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(opaqueListener{ln}) }()
	b.Cleanup(func() { srv.Close(); <-done })
	serialLoop(b, ln.Addr().String(), c, codec.Frame{Cmd: legacy.CmdEcho, Seq: 1, UIN: 42, Body: make([]byte, 16)})
	if srv.workersStarted() == 0 {
		b.Fatal("no request went to a worker")
	}
}
