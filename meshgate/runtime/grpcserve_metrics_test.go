package runtime

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
)

// serverPoint is one grpc.server.* series as exported on /metrics (the
// OTel Prometheus exporter over the listeners' MeterProvider): everything
// but the latencies' values.
type serverPoint struct {
	help   string
	kind   dto.MetricType
	count  uint64
	sum    float64 // the size histograms only
	bounds []float64
}

// serverMetrics gathers the grpc_server_call_* series by family name and
// labels (scope labels included).
func serverMetrics(t *testing.T, rt *Runtime) map[string]serverPoint {
	t.Helper()
	mfs, err := rt.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]serverPoint{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "grpc_server_call_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			sort.Strings(ls)
			p := serverPoint{help: mf.GetHelp(), kind: mf.GetType()}
			switch {
			case m.GetCounter() != nil:
				p.count = uint64(m.GetCounter().GetValue())
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				p.count = h.GetSampleCount()
				if strings.HasSuffix(mf.GetName(), "_bytes") {
					p.sum = h.GetSampleSum()
				}
				for _, b := range h.GetBucket() {
					p.bounds = append(p.bounds, b.GetUpperBound())
				}
			default:
				t.Fatalf("%s: unexpected type %v", mf.GetName(), mf.GetType())
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = p
		}
	}
	return out
}

// delta is after minus before, series that did not change left out.
func delta(before, after map[string]serverPoint) map[string]serverPoint {
	out := map[string]serverPoint{}
	for k, a := range after {
		b := before[k]
		if a.count == b.count {
			continue
		}
		a.count -= b.count
		a.sum -= b.sum
		out[k] = a
	}
	return out
}

// TestDirectServerMetricsParity: with telemetry.grpc_metrics, the same
// calls through a grpc listener served by grpc-go and one served by the
// direct transport export the same grpc.server.call.* series on /metrics:
// names (units), descriptions, types, scope, bucket boundaries, attribute
// sets (grpc.method "other" for routed and unknown methods, the name of
// the registered health Check; grpc.status), counts and message sizes.
// Before the direct transport recorded them, its calls exported none.
func TestDirectServerMetricsParity(t *testing.T) {
	cfg := strings.Replace(directConfig(legacyServer(t)), "  - name: grpcgo\n    kind: grpc\n",
		"  - name: grpcgo\n    kind: grpc\n    grpc_transport: grpc-go\n", 1) + "telemetry: {grpc_metrics: true}\n"
	rt := start(t, mustParse(t, cfg))
	var fail [2]byte
	binary.BigEndian.PutUint16(fail[:], 8)
	run := func(listener string) {
		t.Helper()
		cc := testkit.Client(t, rt.Addr(listener).String())
		calls := []struct {
			method string
			body   []byte
			want   codes.Code
		}{
			{"/legacy.Legacy/Echo", []byte("hello"), codes.OK},
			{"/legacy.Legacy/Echo", []byte(strings.Repeat("e", 3000)), codes.OK},
			{"/legacy.Legacy/Echo", []byte{}, codes.OK},
			{"/legacy.Legacy/Uppercase", []byte("via bridge"), codes.OK},
			{"/legacy.Legacy/Fail", append(fail[:], "gone"...), codes.NotFound},
			{"/legacy.Legacy/Nope", []byte("unrouted"), codes.Unimplemented},
			{"/legacy.Legacy/../x", []byte("bad name"), codes.InvalidArgument},
			{"/legacy.Legacy/Oneway", []byte("fire"), codes.OK},
			{"/legacy.Legacy/Echo", []byte(strings.Repeat("L", 300<<10)), codes.OK},
		}
		for _, c := range calls {
			if o := invoke(t, cc, c.method, c.body); o.Code != c.want {
				t.Fatalf("%s %s: %+v, want %v", listener, c.method, o, c.want)
			}
		}
		hc := healthpb.NewHealthClient(testkit.Dial(t, rt.Addr(listener).String()))
		ctx := testkit.Context(t, 5*time.Second)
		testkit.Succeeds(t, ctx, 20*time.Millisecond, func() error {
			_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "legacy.Legacy"})
			return err
		}, "health Check")
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope.Svc"}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: health of an unknown service: %v", listener, err)
		}
	}
	s0 := serverMetrics(t, rt)
	run("grpcgo")
	s1 := serverMetrics(t, rt)
	run("direct")
	s2 := serverMetrics(t, rt)
	want, got := delta(s0, s1), delta(s1, s2)
	if len(want) == 0 {
		t.Fatal("grpc-go recorded no server metrics")
	}
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		w, okW := want[k]
		g, okG := got[k]
		switch {
		case !okG:
			t.Errorf("direct lacks %s", k)
		case !okW:
			t.Errorf("direct records %s, grpc-go does not", k)
		case w.help != g.help || w.kind != g.kind || w.count != g.count || w.sum != g.sum || !slices.Equal(w.bounds, g.bounds):
			t.Errorf("%s:\n direct  %s\n grpc-go %s", k, showServer(g), showServer(w))
		}
	}
	for _, k := range []string{
		`grpc_server_call_started_total{grpc_method=other,`,
		`grpc_server_call_duration_seconds{grpc_method=grpc.health.v1.Health/Check,grpc_status=NOT_FOUND,`,
	} {
		if !slices.ContainsFunc(sorted, func(s string) bool { return strings.HasPrefix(s, k) }) {
			t.Errorf("no series %s…", k)
		}
	}
	if t.Failed() {
		for _, k := range sorted {
			t.Logf("%s grpc-go %s", k, showServer(want[k]))
		}
	}
}

func showServer(p serverPoint) string {
	return fmt.Sprintf("%v count %d sum %v buckets %d help %q", p.kind, p.count, p.sum, len(p.bounds), p.help)
}
