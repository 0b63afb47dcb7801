package split

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// latencyBuckets are meshgate_request_duration_seconds' bounds.
var latencyBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5}

// requestFamilies registers the request families a GatherSource reads and
// returns the source and a recorder of one (listener, route, upstream).
func requestFamilies(t *testing.T) (*prometheus.Registry, GatherSource, func(listener, route, upstream string) func(codes.Code, time.Duration)) {
	t.Helper()
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_requests_total"}, []string{"listener", "route", "upstream", "code"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meshgate_request_duration_seconds", Buckets: latencyBuckets}, []string{"listener", "route", "upstream"})
	reg.MustRegister(req, lat)
	rec := func(listener, route, upstream string) func(codes.Code, time.Duration) {
		return func(c codes.Code, d time.Duration) {
			req.WithLabelValues(listener, route, upstream, c.String()).Inc()
			lat.WithLabelValues(listener, route, upstream).Observe(d.Seconds())
		}
	}
	return reg, GatherSource{Gatherer: reg, Requests: "meshgate_requests_total", Latency: "meshgate_request_duration_seconds"}, rec
}

func TestTrackerWindow(t *testing.T) {
	_, src, rec := requestFamilies(t)
	c := &clock{t: time.Unix(1000, 0)}
	tr := NewTracker(src, 10*time.Second, c.now)
	observe := rec("mgp", "r", "legacy")
	// old traffic, outside the window by the time we look
	for range 500 {
		observe(codes.Internal, time.Second)
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
			observe(codes.OK, 900*time.Microsecond)
		}
		observe(codes.Unavailable, 2*time.Second)
		if i%2 == 0 {
			tr.Sample()
		}
	}
	ws := tr.Window(Key{Listener: "mgp", Route: "r", Upstream: "legacy"})
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
	// new backend with no history yet: zeros, no division by zero
	rec("mgp", "r", "new")(codes.OK, time.Millisecond)
	if ws := tr.Window(Key{Listener: "mgp", Route: "r", Upstream: "new"}); ws.Span != 0 || ws.RPS != 0 || ws.P99 != 0 {
		t.Fatalf("fresh backend %+v", ws)
	}
}

func TestQuantile(t *testing.T) {
	cum := make([]uint64, len(latencyBuckets))
	// 100 observations: 98 in bucket (0.5ms,1ms], 2 past 5 s
	for i := range cum {
		if latencyBuckets[i] >= 1e-3 {
			cum[i] = 98
		}
	}
	if q := quantile(0.5, latencyBuckets, cum, 100); q <= 500e-6 || q > 1e-3 {
		t.Fatalf("p50 %v", q)
	}
	if q := quantile(0.99, latencyBuckets, cum, 100); q != 5 {
		t.Fatalf("p99 %v, want the last bound", q)
	}
	if q := quantile(0.99, latencyBuckets, cum, 0); q != 0 {
		t.Fatalf("empty %v", q)
	}
}

// GatherSource reads MeshGate's unified request families (the labels of
// meshgate_requests_total and meshgate_request_duration_seconds).
func TestGatherSource(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshgate_requests_total"}, []string{"listener", "route", "upstream", "code"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meshgate_request_duration_seconds", Buckets: latencyBuckets}, []string{"listener", "route", "upstream"})
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
