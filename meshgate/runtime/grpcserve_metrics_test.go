package runtime

import (
	"context"
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
	cfg := directConfig(legacyServer(t)) + "telemetry: {grpc_metrics: true}\n"
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
		// A streaming call (delegated to grpc-go's server on the direct
		// transport): counted once, by grpc-go, on both listeners.
		wctx, cancel := context.WithCancel(ctx)
		w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "legacy.Legacy"})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			t.Fatalf("%s: health Watch: %v", listener, err)
		}
		cancel()
		testkit.Within(t, 5*time.Second, "the Watch ends", func() bool { _, err := w.Recv(); return err != nil })
	}
	// settled waits until the server has recorded the end of the n-th
	// Watch (after the client saw its stream end) and returns the metrics.
	settled := func(n uint64) map[string]serverPoint {
		var m map[string]serverPoint
		testkit.Within(t, 5*time.Second, "the Watch's end recorded", func() bool {
			m = serverMetrics(t, rt)
			// grpc-go records the three end-of-call instruments one
			// after the other.
			for _, name := range []string{"duration_seconds", "rcvd_total_compressed_message_size_bytes", "sent_total_compressed_message_size_bytes"} {
				var ended uint64
				for k, p := range m {
					if strings.HasPrefix(k, "grpc_server_call_"+name+"{grpc_method=grpc.health.v1.Health/Watch,") {
						ended += p.count
					}
				}
				if ended != n {
					return false
				}
			}
			return true
		})
		return m
	}
	s0 := serverMetrics(t, rt)
	run("grpcgo")
	s1 := settled(1)
	run("direct")
	s2 := settled(2)
	want, got := delta(s0, s1), delta(s1, s2)
	if len(want) == 0 {
		t.Fatal("grpc-go recorded no server metrics")
	}
	sorted := testkit.CompareSeries(t, want, got, func(w, g serverPoint) bool {
		return w.help == g.help && w.kind == g.kind && w.count == g.count && w.sum == g.sum && slices.Equal(w.bounds, g.bounds)
	}, showServer)
	for _, k := range []string{
		`grpc_server_call_started_total{grpc_method=other,`,
		`grpc_server_call_duration_seconds{grpc_method=grpc.health.v1.Health/Check,grpc_status=NOT_FOUND,`,
		`grpc_server_call_started_total{grpc_method=grpc.health.v1.Health/Watch,`,
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
