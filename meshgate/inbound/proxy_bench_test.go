package inbound

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// BenchmarkPrivateProxySerial: one MGP client, one request at a time:
// frame → inbound → private pool (one multiplexed connection, MeshGate's
// own seq) → the reference legacy server (Echo) → frame. Allocations
// include the legacy server's and the pool connection's.
func BenchmarkPrivateProxySerial(b *testing.B) {
	lln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ls := legacy.NewServer(legacy.ServerOptions{})
	go func() { _ = ls.Serve(lln) }()
	defer ls.Close()
	c := mgp.New(0)
	pool, err := upstream.NewPrivatePool(config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{lln.Addr().String()},
		LB: config.LBRoundRobin, Connections: 1, MaxInFlight: 1024, Heartbeat: config.DefaultHeartbeat}, c, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pool.WaitHealthy(ctx, 1); err != nil {
		b.Fatal(err)
	}
	m := admin.NewMetrics()
	srv := New(Options{Name: "p2p", Codec: c, Metrics: m}, NewTable("p2p", []Route{{Cmd: legacy.CmdEcho, Private: pool, Timeout: config.DefaultTimeout}},
		Limits{MaxInFlight: config.DefaultMaxInFlight, IdleTimeout: config.DefaultIdleTimeout, ReadTimeout: config.DefaultReadTimeout}, nil, m))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	req := codec.Frame{Cmd: legacy.CmdEcho, Seq: 1, UIN: 42, Body: make([]byte, 16)}
	wire, _ := c.Append(nil, &req)
	rd := codec.NewReader(nc, c, 64<<10)
	var f codec.Frame
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := nc.Write(wire); err != nil {
			b.Fatal(err)
		}
		if err := rd.ReadFrame(&f); err != nil || f.Result != 0 || len(f.Body) != 16 {
			b.Fatalf("reply %v %+v", err, f)
		}
	}
}
