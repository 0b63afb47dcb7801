package migrate

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/split"
)

var twoSides = &config.Split{Backends: []config.SplitBackend{{Upstream: "legacy"}, {Upstream: "new", Percent: 50}}}

func newUIN() uint64 {
	u := uint64(1)
	for split.Bucket(u) >= 5000 {
		u++
	}
	return u
}

// An override outlives a reload (a new generation's rules for the route
// obey it) until cleared, and with a state file it outlives the process.
func TestOverrideSurvivesReloadAndRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	c := New(prometheus.NewRegistry(), nil)
	if err := c.Configure(&config.Migrate{StateFile: state}); err != nil {
		t.Fatal(err)
	}
	r1, _ := c.Rule("in/1", twoSides)
	c.Publish([]Route{{ID: "in/1", Listener: "in", Rule: r1}})
	if _, err := c.SetOverride("in/1", "", "incident"); err != nil {
		t.Fatal(err)
	}
	// reload: a new generation builds a new rule for the same route
	r2, _ := c.Rule("in/1", twoSides)
	c.Publish([]Route{{ID: "in/1", Listener: "in", Rule: r2}})
	if k, why := r2.Pick(newUIN(), ""); k != 0 || why != split.ReasonOverride {
		t.Fatalf("after reload: %d %v", k, why)
	}
	// restart: a new controller reading the state file
	c2 := New(prometheus.NewRegistry(), nil)
	if err := c2.Configure(&config.Migrate{StateFile: state}); err != nil {
		t.Fatal(err)
	}
	r3, _ := c2.Rule("in/1", twoSides)
	if k, _ := r3.Pick(newUIN(), ""); k != 0 {
		t.Fatal("override lost across restart")
	}
	if ok, err := c2.ClearOverride("in/1"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if k, _ := r3.Pick(newUIN(), ""); k != 1 {
		t.Fatal("clear not in force")
	}
	if _, err := c2.SetOverride("in/1", "", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("override of a route not published: %v", err)
	}
}

// requestFamilies registers the request metric families on a new registry.
func requestFamilies() (*prometheus.Registry, *prometheus.CounterVec, *prometheus.HistogramVec) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: RequestsFamily}, []string{"listener", "route", "upstream", "code"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: LatencyFamily}, []string{"listener", "route", "upstream"})
	reg.MustRegister(req, lat)
	return reg, req, lat
}

// By default the status reads the request families of New's registry.
func TestStatus(t *testing.T) {
	reg, req, _ := requestFamilies()
	c := New(reg, nil)
	r, _ := c.Rule("in/1", twoSides)
	c.Publish([]Route{{ID: "in/1", Listener: "in", Label: "1", Rule: r, Shadow: "shadow-svc"}, {ID: "in/0", Listener: "in", Label: "0", Upstream: "legacy"}})
	req.WithLabelValues("in", "1", "new", "Unavailable") // the series exist at the first sample
	req.WithLabelValues("in", "1", "legacy", "OK")
	c.tracker.Sample()
	req.WithLabelValues("in", "1", "new", "Unavailable").Add(10)
	req.WithLabelValues("in", "1", "legacy", "OK").Add(10)
	st := c.Status()
	if len(st.Routes) != 2 || st.Routes[0].Route != "in/0" || st.Routes[1].By != config.SplitByUINBucket {
		t.Fatalf("%+v", st)
	}
	b := st.Routes[1].Backends
	if b[0].Percent != 50 || b[1].Requests != 10 || b[1].ErrorRate != 1 || b[0].ErrorRate != 0 || st.Routes[1].Shadow == nil {
		t.Fatalf("%+v", st.Routes[1])
	}
}

// A route that stops being split loses its share series.
func TestShareSeriesFollowPublish(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := New(reg, nil)
	r, _ := c.Rule("in/1", twoSides)
	c.Publish([]Route{{ID: "in/1", Listener: "in", Rule: r}})
	if n, _ := testutil.GatherAndCount(reg, "meshgate_split_share"); n != 2 {
		t.Fatalf("%d share series", n)
	}
	c.Publish([]Route{{ID: "in/1", Listener: "in", Upstream: "legacy"}})
	if n, _ := testutil.GatherAndCount(reg, "meshgate_split_share"); n != 0 {
		t.Fatalf("%d share series after the split was removed", n)
	}
}

// With unified metrics the status reads the request families by listener,
// route label and upstream.
func TestStatusUnified(t *testing.T) {
	reg, req, _ := requestFamilies()
	c := New(prometheus.NewRegistry(), nil, WithUnifiedMetrics(reg, RequestsFamily, LatencyFamily))
	r, _ := c.Rule("up", twoSides)
	c.Publish([]Route{{ID: "up", Listener: "mgp", Label: "2", Rule: r}})
	c.tracker.Sample()
	req.WithLabelValues("mgp", "2", "new", "OK").Add(7)
	req.WithLabelValues("mgp", "2", "legacy", "Internal").Add(3)
	st := c.Status()
	b := st.Routes[0].Backends
	if b[1].Upstream != "new" || b[1].Total != 7 || b[0].Total != 3 {
		t.Fatalf("%+v", st.Routes[0])
	}
}

// The controller adds no metric family of its own for backends: each side
// of a split counts in the request families only (meshgate_split_share
// and the override and shadow families aside).
func TestNoBackendFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := New(reg, nil)
	r, _ := c.Rule("in/1", twoSides)
	c.Publish([]Route{{ID: "in/1", Listener: "in", Label: "1", Rule: r}, {ID: "in/0", Listener: "in", Label: "0", Upstream: "legacy"}})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "meshgate_backend_") {
			t.Errorf("family %s registered", f.GetName())
		}
	}
}
