package inbound

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/split"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

type namedUpstream struct {
	nopUpstream
	name string
}

// TableFromConfig with migration: a split route resolves one full route per
// backend, picks by the user's bucket, the allow-list and ext 4 caller,
// obeys an override at once, and picking allocates nothing.
func TestTableSplitPick(t *testing.T) {
	cfg, err := config.Parse([]byte(`
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:7000
    routes:
      - cmd: 10
        split:
          backends:
            - {upstream: a, method: /a.A/M}
            - {upstream: b, method: /b.B/M, percent: 30}
          allow: {uins: [5]}
          callers: [{caller: ops, upstream: b}]
upstreams:
  - {name: a, protocol: grpc, endpoints: [127.0.0.1:9]}
  - {name: b, protocol: grpc, endpoints: [127.0.0.1:10]}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	mc := migrate.New(prometheus.NewRegistry(), nil)
	gen := mc.Begin()
	tbl, err := TableFromConfig(&cfg.Listeners[0], cfg.Defaults, func(n string) Target { return Target{GRPC: namedUpstream{name: n}} }, nil, WithMigration(mc))
	if err != nil {
		t.Fatal(err)
	}
	mc.Commit(gen)
	r := tbl.Lookup(10, 0)
	var uinA, uinB uint64
	for u := uint64(100); uinA == 0 || uinB == 0; u++ {
		if split.Bucket(u) < 3000 {
			uinB = u
		} else {
			uinA = u
		}
	}
	caller := []codec.Ext{{Key: codec.ExtCaller, Value: []byte("ops")}}
	for _, c := range []struct {
		f    codec.Frame
		want string
	}{
		{codec.Frame{Cmd: 10, UIN: uinA}, "a"},
		{codec.Frame{Cmd: 10, UIN: uinB}, "b"},
		{codec.Frame{Cmd: 10, UIN: 5}, "b"},
		{codec.Frame{Cmd: 10, UIN: uinA, Ext: caller}, "b"},
	} {
		s := r.pick(&c.f)
		if s.UpstreamName != c.want || s.Upstream.(namedUpstream).name != c.want || s.Method != "/"+c.want+"."+string(c.want[0]-32)+"/M" {
			t.Errorf("uin %d: side %s %s", c.f.UIN, s.UpstreamName, s.Method)
		}
	}
	if len(mc.Status().Routes) != 1 || mc.Status().Routes[0].Route != "in/10" {
		t.Fatalf("published %+v", mc.Status().Routes)
	}
	if _, err := mc.SetOverride("in/10", "", ""); err != nil {
		t.Fatal(err)
	}
	if s := r.pick(&codec.Frame{Cmd: 10, UIN: uinB}); s.UpstreamName != "a" {
		t.Fatalf("override: %s", s.UpstreamName)
	}
	f := codec.Frame{Cmd: 10, UIN: uinB, Ext: caller}
	if a := testing.AllocsPerRun(1000, func() { _ = r.pick(&f) }); a != 0 {
		t.Fatalf("pick allocates %v", a)
	}
}

// BenchmarkPrivateProxySplitSerial is BenchmarkPrivateProxySerial through a
// split route (50 % of users on each of two private pools to the same
// legacy server), with the uin varying per request: the split adds no
// allocation per request.
func BenchmarkPrivateProxySplitSerial(b *testing.B) {
	lln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ls := legacy.NewServer(legacy.ServerOptions{})
	go func() { _ = ls.Serve(lln) }()
	defer ls.Close()
	c := mgp.New(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pools := map[string]*upstream.PrivatePool{}
	for _, n := range []string{"a", "b"} {
		p, err := upstream.NewPrivatePool(config.Upstream{Name: n, Protocol: config.ProtoPrivate, Endpoints: []string{lln.Addr().String()},
			LB: config.LBRoundRobin, Connections: 1, MaxInFlight: 1024, Heartbeat: config.DefaultHeartbeat}, c, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		if err := p.WaitHealthy(ctx, 1); err != nil {
			b.Fatal(err)
		}
		pools[n] = p
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
`, legacy.CmdEcho, lln.Addr(), lln.Addr())), "")
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
	srv := New(Options{Name: "p2p", Codec: c, Metrics: m}, tbl)
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
	wires := make([][]byte, 64)
	for i := range wires {
		wires[i], _ = c.Append(nil, &codec.Frame{Cmd: legacy.CmdEcho, Seq: 1, UIN: uint64(1000 + i), Body: make([]byte, 16)})
	}
	rd := codec.NewReader(nc, c, 64<<10)
	var f codec.Frame
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := nc.Write(wires[i%len(wires)]); err != nil {
			b.Fatal(err)
		}
		if err := rd.ReadFrame(&f); err != nil || f.Result != 0 || len(f.Body) != 16 {
			b.Fatalf("reply %v %+v", err, f)
		}
	}
}
