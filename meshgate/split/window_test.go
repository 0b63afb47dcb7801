package split

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestTrackerWindow(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c := &clock{t: time.Unix(1000, 0)}
	tr := NewTracker(m, 10*time.Second, c.now)
	legacy := m.Backend("r", "legacy")
	if m.Backend("r", "legacy") != legacy {
		t.Fatal("Backend not cached")
	}
	// old traffic, outside the window by the time we look
	for range 500 {
		legacy.Observe(codes.Internal, time.Second)
	}
	tr.Sample()
	c.t = c.t.Add(5 * time.Second)
	tr.Sample()
	c.t = c.t.Add(5 * time.Second)
	tr.Sample() // base is now the reading 10 s ago, after the 500
	// 1000 requests in the next 10 s: 990 OK at ~1 ms, 10 UNAVAILABLE at ~2 s
	for i := range 10 {
		c.t = c.t.Add(time.Second)
		for range 99 {
			legacy.Observe(codes.OK, 900*time.Microsecond)
		}
		legacy.Observe(codes.Unavailable, 2*time.Second)
		if i%2 == 0 {
			tr.Sample()
		}
	}
	ws := tr.Window(Key{Route: "r", Upstream: "legacy"})
	if ws.Total != 1500 || ws.Requests != 1000 || ws.Errors != 10 {
		t.Fatalf("window %+v", ws)
	}
	if ws.Span != 10*time.Second || math.Abs(ws.RPS-100) > 1e-9 || math.Abs(ws.ErrorRate-0.01) > 1e-9 {
		t.Fatalf("window %+v", ws)
	}
	if ws.P50 <= 500e-6 || ws.P50 > 1e-3 || ws.P99 <= 500e-6 || ws.P99 > 1e-3 {
		t.Fatalf("p50 %v p99 %v, want in (0.5ms, 1ms]", ws.P50, ws.P99)
	}
	if ws.Codes["Unavailable"] != 10 || ws.Codes["OK"] != 990 {
		t.Fatalf("codes %v", ws.Codes)
	}
	// exported through /metrics under the same counters
	if got := testutil.ToFloat64(m.requests.WithLabelValues("r", "legacy", "Internal")); got != 500 {
		t.Fatalf("requests_total{code=Internal} = %v", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(""), "meshgate_backend_requests_total"); err == nil {
		t.Fatal("expected series")
	}
	// new backend with no history yet: zeros, no division by zero
	m.Backend("r", "new")
	if ws := tr.Window(Key{Route: "r", Upstream: "new"}); ws.Span != 0 || ws.RPS != 0 || ws.P99 != 0 {
		t.Fatalf("fresh backend %+v", ws)
	}
}

func TestQuantile(t *testing.T) {
	cum := make([]uint64, len(LatencyBuckets))
	// 100 observations: 98 in bucket (0.5ms,1ms], 2 past 5 s
	for i := range cum {
		if LatencyBuckets[i] >= 1e-3 {
			cum[i] = 98
		}
	}
	if q := quantile(0.5, LatencyBuckets, cum, 100); q <= 500e-6 || q > 1e-3 {
		t.Fatalf("p50 %v", q)
	}
	if q := quantile(0.99, LatencyBuckets, cum, 100); q != 5 {
		t.Fatalf("p99 %v, want the last bound", q)
	}
	if q := quantile(0.99, LatencyBuckets, cum, 0); q != 0 {
		t.Fatalf("empty %v", q)
	}
}

func TestObserveAllocs(t *testing.T) {
	m := NewMetrics(nil)
	s := m.Backend("r", "b")
	if a := testing.AllocsPerRun(1000, func() {
		s.Observe(codes.OK, time.Millisecond)
		s.Observe(codes.Code(200), time.Millisecond)
	}); a != 0 {
		t.Fatalf("Observe allocates %v", a)
	}
}

// GatherSource reads MeshGate's unified request families (the labels of
// meshgate_requests_total and meshgate_request_duration_seconds).
func TestGatherSource(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_requests_total"}, []string{"listener", "route", "upstream", "code"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meshgate_request_duration_seconds", Buckets: LatencyBuckets}, []string{"listener", "route", "upstream"})
	reg.MustRegister(req, lat)
	c := &clock{t: time.Unix(1000, 0)}
	tr := NewTracker(GatherSource{Gatherer: reg, Requests: "meshgate_requests_total", Latency: "meshgate_request_duration_seconds"}, 10*time.Second, c.now)
	req.WithLabelValues("mgp", "2", "new", "OK").Add(5)
	lat.WithLabelValues("mgp", "2", "new").Observe(0.002)
	tr.Sample()
	c.t = c.t.Add(10 * time.Second)
	req.WithLabelValues("mgp", "2", "new", "OK").Add(90)
	req.WithLabelValues("mgp", "2", "new", "Unavailable").Add(10)
	for range 100 {
		lat.WithLabelValues("mgp", "2", "new").Observe(0.003)
	}
	req.WithLabelValues("mgp", "2", "legacy", "OK").Add(1)
	k := Key{Listener: "mgp", Route: "2", Upstream: "new"}
	ws := tr.Windows([]Key{k, {Listener: "mgp", Route: "2", Upstream: "legacy"}})
	if w := ws[k]; w.Requests != 100 || w.Total != 105 || w.ErrorRate != 0.1 || w.RPS != 10 || w.P99 <= 2.5e-3 || w.P99 > 5e-3 {
		t.Fatalf("%+v", w)
	}
	if w := ws[Key{Listener: "mgp", Route: "2", Upstream: "legacy"}]; w.Total != 1 || w.Span != 0 {
		t.Fatalf("legacy (no history yet) %+v", w)
	}
}
