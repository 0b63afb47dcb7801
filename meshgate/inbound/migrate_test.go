package inbound

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/split"
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
