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
	ws := tr.Window(legacy)
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
	if ws := tr.Window(m.Backend("r", "new")); ws.Span != 0 || ws.RPS != 0 || ws.P99 != 0 {
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
	if q := quantile(0.5, cum, 100); q <= 500e-6 || q > 1e-3 {
		t.Fatalf("p50 %v", q)
	}
	if q := quantile(0.99, cum, 100); q != 5 {
		t.Fatalf("p99 %v, want the last bound", q)
	}
	if q := quantile(0.99, cum, 0); q != 0 {
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
