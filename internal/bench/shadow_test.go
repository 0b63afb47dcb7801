package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshgate/meshgate/meshgate/config"
)

// TestShadowConfigsParse checks the MPPs and MGGs configs against this
// tree's config package: the shadow block must be accepted with percent
// 100 to the second backend.
func TestShadowConfigsParse(t *testing.T) {
	for name, cfg := range map[string]string{
		"MPPs": meshGatePrivToPrivShadow("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"),
		"MGGs": meshGateGRPCToGRPCShadow("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"),
	} {
		c, err := config.Parse([]byte(cfg), t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, cfg)
		}
		r := c.Listeners[0].Routes[0]
		if r.Shadow == nil || r.Shadow.Percent != 100 || !strings.HasSuffix(r.Shadow.Upstream, "-shadow") {
			t.Fatalf("%s: shadow %+v", name, r.Shadow)
		}
	}
}

// shadowRegistry registers the shadow counters as meshgate/shadow names
// them, on a real registry served over real HTTP on loopback.
type shadowRegistry struct {
	req, match, drop *prometheus.CounterVec
	mis              *prometheus.CounterVec
	srv              *httptest.Server
}

func newShadowRegistry(t *testing.T, withShadow bool) *shadowRegistry {
	reg := prometheus.NewRegistry()
	s := &shadowRegistry{
		req:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricShadowRequests}, []string{"route"}),
		match: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricShadowMatched}, []string{"route"}),
		drop:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricShadowDropped}, []string{"route"}),
		mis:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricShadowMismatched}, []string{"route", "kind"}),
	}
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_requests_total"})
	reg.MustRegister(other)
	if withShadow {
		reg.MustRegister(s.req, s.match, s.drop, s.mis)
	}
	s.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *shadowRegistry) admin() string { return strings.TrimPrefix(s.srv.URL, "http://") }

func TestScrapeShadowCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := newShadowRegistry(t, true)
	s.req.WithLabelValues("a").Add(10)
	s.req.WithLabelValues("b").Add(5)
	s.match.WithLabelValues("a").Add(9)
	s.mis.WithLabelValues("a", "body").Add(1)
	s.mis.WithLabelValues("b", "timeout").Add(2)
	s.drop.WithLabelValues("b").Add(3)
	got, err := scrapeShadow(ctx, s.admin())
	if want := (ShadowCounts{Requests: 15, Matched: 9, Mismatched: 3, Dropped: 3}); err != nil || got != want {
		t.Fatalf("scrape: %+v %v, want %+v", got, err, want)
	}
	if got.settled() {
		t.Fatal("12 of 15 compared reported settled")
	}
	// Compared before counted requested (MeshGate increments requests just
	// after queueing): not settled either.
	if (ShadowCounts{Requests: 5, Matched: 6}).settled() {
		t.Fatal("6 of 5 compared reported settled")
	}
	// The last copies are compared while settleShadow polls.
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.match.WithLabelValues("b").Add(3)
	}()
	got, err = settleShadow(ctx, s.admin(), 3*time.Second)
	if err != nil || !got.settled() || got.Matched != 12 {
		t.Fatalf("settle: %+v %v", got, err)
	}
	d := got.sub(ShadowCounts{Requests: 10, Matched: 9})
	if d != (ShadowCounts{Requests: 5, Matched: 3, Mismatched: 3, Dropped: 3}) {
		t.Fatalf("delta %+v", d)
	}
	// Never settles: the last counters come back after the wait, no error.
	s.req.WithLabelValues("a").Add(1)
	start := time.Now()
	got, err = settleShadow(ctx, s.admin(), 300*time.Millisecond)
	if err != nil || got.settled() || got.Requests != 16 || time.Since(start) > 2*time.Second {
		t.Fatalf("unsettled: %+v %v after %v", got, err, time.Since(start))
	}

	none := newShadowRegistry(t, false)
	if _, err := scrapeShadow(ctx, none.admin()); !errors.Is(err, ErrNoShadowMetrics) {
		t.Fatalf("no shadow metrics: %v", err)
	}
	bad := httptest.NewServer(http.NotFoundHandler())
	defer bad.Close()
	if _, err := scrapeShadow(ctx, strings.TrimPrefix(bad.URL, "http://")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: %v", err)
	}
}

// TestReportShadowHopsAndCounters checks that the shadow scenarios pair
// with their base scenario per repeat and that their counters are summed
// and printed.
func TestReportShadowHopsAndCounters(t *testing.T) {
	p := Params{Rate: 1000, Conns: 1, Payload: 1024, Duration: time.Second}
	run := func(rep int, p50, p99 float64, sh *ShadowCounts) Run {
		cpu := 0.08
		if sh != nil {
			cpu = 0.1 + 0.01*float64(rep)
		}
		return Run{Repeat: rep, Intended: Latency{P50: p50, P99: p99}, OK: 1000, Shadow: sh,
			Procs: []ProcUsage{{Role: RoleMeshGate, CPUPer1k: cpu}}}
	}
	sh := func(n int64) *ShadowCounts { return &ShadowCounts{Requests: n, Matched: n} }
	rep := &Report{Results: []Result{
		{Scenario: "MPP", Params: p, Runs: []Run{run(0, 300, 600, nil), run(1, 320, 700, nil)}},
		{Scenario: "MPPs", Params: p, Runs: []Run{run(0, 340, 650, sh(1200)), run(1, 380, 800, sh(1300))}},
	}}
	rep.Finish()
	h := rep.hop("MPPs", "MPP", p)
	if h == nil || h.Pairs != 2 || h.P50 != (Spread{Median: 50, Min: 40, Max: 60}) || h.Proxy != RoleMeshGate || math.Abs(h.CPUPer1k.Median-0.105) > 1e-9 {
		t.Fatalf("MPPs−MPP hop %+v", h)
	}
	s := rep.find("MPPs", p).Shadow
	if s == nil || *s != (ShadowCounts{Requests: 2500, Matched: 2500}) {
		t.Fatalf("summed shadow %+v", s)
	}
	if rep.find("MPP", p).Shadow != nil {
		t.Fatal("MPP has shadow counters")
	}
	rep.Finish() // re-rendering (-from-json) must not count twice
	if s := rep.find("MPPs", p).Shadow; s.Requests != 2500 {
		t.Fatalf("summed twice: %+v", s)
	}
	var tab, md bytes.Buffer
	rep.WriteTable(&tab)
	rep.WriteMarkdown(&md)
	for _, want := range []string{"MPPs−MPP", "100 % shadow on private→private", "shadow requests", "2500"} {
		if !strings.Contains(tab.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tab.String())
		}
	}
	if !strings.Contains(md.String(), "| MPPs | 1 KB × 1000 rps × 1 conn | 2000 | 2500 | 2500 | 0 | 0 | 0.080 | 0.105 | +0.025 [+0.020–+0.030] |") {
		t.Errorf("markdown lacks the shadow row:\n%s", md.String())
	}
}
