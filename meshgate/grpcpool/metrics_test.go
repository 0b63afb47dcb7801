package grpcpool

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcotel "google.golang.org/grpc/stats/opentelemetry"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
)

// point is one client-metric series as the test compares it: everything
// but the latencies' values.
type point struct {
	scope, unit, desc string
	count             uint64
	bounds            []float64
	sum               int64 // the size histograms only
}

// clientMetrics makes the same calls through a pool of the given transport
// whose ClientConns carry grpc-go's OpenTelemetry instrumentation, as the
// runtime builds it with telemetry.grpc_metrics, and returns the
// grpc.client.* series recorded, by metric name and attributes.
func clientMetrics(t *testing.T, addr, transport string) map[string]point {
	t.Helper()
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	u := directUpstream([]string{addr}, config.LBRoundRobin, 1)
	u.Name, u.GRPCTransport = "user-svc", transport
	p, err := New(u, Options{
		DialOptions: []grpc.DialOption{grpcotel.DialOption(grpcotel.Options{MetricsOptions: grpcotel.MetricsOptions{MeterProvider: mp}})},
		Meter:       mp,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	call := func(method string, req []byte, want codes.Code, opts ...grpc.CallOption) {
		t.Helper()
		var out []byte
		err := p.Invoke(ctx, method, req, &out, opts...)
		if status.Code(err) != want {
			t.Fatalf("%s %s: %v, want %v", transport, method, err, want)
		}
	}
	for i := range 3 {
		call("/test.Svc/Echo", bytes.Repeat([]byte{'x'}, 1000*(i+1)), codes.OK, grpc.StaticMethod())
	}
	call("/test.Svc/Fail", []byte("x"), codes.NotFound, grpc.StaticMethod())
	call("/test.Svc/Fail", []byte("x"), codes.NotFound, grpc.StaticMethod())
	call("/test.Svc/Echo", []byte("no static method"), codes.OK) // grpc.method "other"
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]point{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if len(m.Name) < 12 || m.Name[:12] != "grpc.client." {
				continue
			}
			base := point{scope: sm.Scope.Name + "@" + sm.Scope.Version, unit: m.Unit, desc: m.Description}
			key := func(s attribute.Set) string { return m.Name + " " + s.Encoded(attribute.DefaultEncoder()) }
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					pt := base
					pt.count = uint64(dp.Value)
					out[key(dp.Attributes)] = pt
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					pt := base
					pt.count, pt.bounds, pt.sum = dp.Count, dp.Bounds, dp.Sum
					out[key(dp.Attributes)] = pt
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					pt := base
					pt.count, pt.bounds = dp.Count, dp.Bounds
					out[key(dp.Attributes)] = pt
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

// TestDirectMetricsParity: with grpc-go's OpenTelemetry metrics on, the
// direct transport records the same client instruments as grpc-go's
// ClientConn for the same calls: names, scope, units, descriptions, bucket
// boundaries, attribute sets (grpc.method with grpc.StaticMethod, else
// "other"; grpc.target; grpc.status), counts and message sizes.
func TestDirectMetricsParity(t *testing.T) {
	addr := (&testkit.Stub{Services: map[string]map[string]demo.Handler{"test.Svc": {
		"Echo": func(_ context.Context, b []byte) ([]byte, error) { return b, nil },
		"Fail": func(context.Context, []byte) ([]byte, error) { return nil, status.Error(codes.NotFound, "no") },
	}}}).Start(t)
	want := clientMetrics(t, addr, config.GRPCTransportGRPCGo)
	got := clientMetrics(t, addr, config.GRPCTransportDirect)
	if len(want) == 0 {
		t.Fatal("grpc-go recorded no client metrics")
	}
	testkit.CompareSeries(t, want, got, func(w, g point) bool {
		return w.scope == g.scope && w.unit == g.unit && w.desc == g.desc && w.count == g.count && w.sum == g.sum && slices.Equal(w.bounds, g.bounds)
	}, show)
}

func show(p point) string {
	return fmt.Sprintf("scope %s unit %s desc %q count %d sum %d bounds %v", p.scope, p.unit, p.desc, p.count, p.sum, p.bounds)
}
