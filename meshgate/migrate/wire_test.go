package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/shadow"
)

type wireRoute struct {
	backend string
	mig     *Wiring[wireRoute]
}

var errTest = errors.New("test: invalid")

func wireSpec(rc *config.Route) RouteSpec[wireRoute] {
	return RouteSpec[wireRoute]{
		Info:   Route{ID: "in/1", Listener: "in", Upstream: "legacy", Label: "1"},
		Config: rc, Field: "listeners[0].routes[0]", Err: errTest,
		ShadowCaller: func(sh *config.Shadow) shadow.Caller {
			if sh.Upstream != "shadow" {
				return nil
			}
			return shadow.CallerFunc(func(context.Context, *shadow.Request) shadow.Outcome { return shadow.Outcome{} })
		},
		Side: func(k int, b config.SplitBackend, mirror *Wiring[wireRoute]) (*wireRoute, error) {
			if b.Upstream == "gone" {
				return nil, nil
			}
			return &wireRoute{backend: b.Upstream, mig: mirror}, nil
		},
	}
}

// WireRoute registers the route in the staging generation, builds one side
// per backend carrying the route's mirror, and names the field of an
// unknown shadow or split backend upstream.
func TestWireRoute(t *testing.T) {
	c := New(prometheus.NewRegistry(), nil)
	g := c.Begin()
	defer c.Abort(g)

	if w, err := WireRoute(c, wireSpec(&config.Route{Upstream: "legacy"})); w != nil || err != nil {
		t.Fatalf("plain route: %+v %v", w, err)
	}
	sh := &config.Shadow{Upstream: "shadow", Percent: 100, Concurrency: 1, Queue: 1, Diffs: config.ShadowDiffs{Keep: 1, Sample: 1, MaxBody: 1}}
	w, err := WireRoute(c, wireSpec(&config.Route{Upstream: "legacy", Split: twoSides, Shadow: sh}))
	if err != nil {
		t.Fatal(err)
	}
	if w.Rule == nil || w.Mirror != nil || len(w.Sides) != 2 || w.Sides[1].backend != "new" {
		t.Fatalf("split wiring %+v", w)
	}
	for _, s := range w.Sides {
		if s.mig == nil || s.mig.Mirror == nil || s.mig.Rule != nil {
			t.Fatalf("side %s does not carry the mirror: %+v", s.backend, s.mig)
		}
	}
	if len(g.routes) != 2 || g.routes[1].Rule != w.Rule || g.routes[1].Shadow != "shadow" || len(g.mirrors) != 1 {
		t.Fatalf("generation routes %+v, %d mirrors", g.routes, len(g.mirrors))
	}

	_, err = WireRoute(c, wireSpec(&config.Route{Upstream: "legacy", Shadow: &config.Shadow{Upstream: "gone"}}))
	if !errors.Is(err, errTest) || !strings.Contains(err.Error(), `listeners[0].routes[0].shadow.upstream: no upstream "gone"`) {
		t.Fatalf("unknown shadow upstream: %v", err)
	}
	gone := *twoSides
	gone.Backends = append([]config.SplitBackend(nil), twoSides.Backends...)
	gone.Backends[1].Upstream = "gone"
	_, err = WireRoute(c, wireSpec(&config.Route{Upstream: "legacy", Split: &gone}))
	if !errors.Is(err, errTest) || !strings.Contains(err.Error(), `listeners[0].routes[0].split.backends[1].upstream: no upstream "gone"`) {
		t.Fatalf("unknown split backend upstream: %v", err)
	}
}
