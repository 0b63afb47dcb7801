package outbound

import (
	"testing"

	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

func TestCheckMethodMatchesConfig(t *testing.T) {
	for _, m := range []string{
		"/pkg.Svc/M", "/a/b", "/pkg.Svc/*", "/pkg.Svc/..", "/../M", "/pkg.Svc/.", "/pkg.Svc/a/b",
		"/pkg.Svc/M\x00", "/pk\x00g/M", "/pkg Svc/M", "pkg.Svc/M", "/pkg.Svc/", "//M", "/", "", "/pkg.Svc/M\n",
	} {
		want := config.CheckMethod(m, false) == nil
		if got := checkMethod(m); got != want {
			t.Errorf("checkMethod(%q) = %v, config.CheckMethod says %v", m, got, want)
		}
	}
}

func TestLookupFirstMatchWins(t *testing.T) {
	var mm *admin.Metrics
	l := config.Listener{Name: "l", Routes: []config.Route{
		{Method: "/a.S/*", Cmd: 1, Upstream: "u"},
		{Method: "/a.S/X", Cmd: 2, Upstream: "u"},
		{Method: "/b.S/X", Cmd: 3, Upstream: "u"},
		{Method: "/b.S/*", Cmd: 4, Upstream: "u"},
		{Method: "/b.S/X", Cmd: 5, Upstream: "u"},
	}}
	p, err := upstream.NewPrivatePool(config.Upstream{Name: "u", Protocol: config.ProtoPrivate, Endpoints: []string{"127.0.0.1:1"}}.WithDefaults(), mgp.New(0), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tb, err := buildTable(withTimeouts(l), upstream.Set{Private: map[string]*upstream.PrivatePool{"u": p}}, mm)
	if err != nil {
		t.Fatal(err)
	}
	for m, cmd := range map[string]uint32{"/a.S/X": 1, "/a.S/Y": 1, "/b.S/X": 3, "/b.S/Y": 4} {
		if r := tb.lookup(m); r == nil || r.Cmd != cmd {
			t.Errorf("%s -> %+v, want cmd %d", m, r, cmd)
		}
	}
	if r := tb.lookup("/c.S/X"); r != nil {
		t.Errorf("unrouted method matched %+v", r)
	}
}

// withTimeouts gives routes without a timeout the default one, as
// config.ApplyDefaults does.
func withTimeouts(l config.Listener) config.Listener {
	for i := range l.Routes {
		if l.Routes[i].Timeout == 0 {
			l.Routes[i].Timeout = config.DefaultTimeout
		}
	}
	return l
}
