package grpcserve

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcotel "google.golang.org/grpc/stats/opentelemetry"
	"google.golang.org/grpc/status"
)

// counts collects the grpc.server.call.* data points of rd by metric
// name and attribute set: the counter's value, a histogram's count.
func counts(t *testing.T, rd sdkmetric.Reader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			key := func(s attribute.Set) string { return m.Name + " " + s.Encoded(attribute.DefaultEncoder()) }
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out[key(dp.Attributes)] = dp.Value
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					out[key(dp.Attributes)] = int64(dp.Count)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out[key(dp.Attributes)] = int64(dp.Count)
				}
			}
		}
	}
	return out
}

// TestMetricsTransportAnswers: calls the transport answers without the
// handler are recorded as grpc-go records them when its handler fails
// them: a request that does not arrive within RecvTimeout
// (DEADLINE_EXCEEDED), a stream the client resets before its request is
// complete (CANCELLED); headers the transport rejects (content-type) and
// a malformed method name are not recorded; a registered method is
// labelled by name; an unknown grpc-encoding counts (UNIMPLEMENTED). Every
// call started ends exactly once.
func TestMetricsTransportAnswers(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	m, err := NewMetrics(mp, map[string]grpc.ServiceInfo{"reg.Svc": {Methods: []grpc.MethodInfo{{Name: "Get"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, handlerFunc(echo), func(c *Config) { c.RecvTimeout, c.Metrics = 200*time.Millisecond, m })
	rc := rawDial(t, ts.addr)

	rc.headers(1, false, grpcReq...) // no DATA: recv timeout
	if st, err := rc.statusOf(1); err != nil || st["grpc-status"] != "4" {
		t.Fatalf("recv timeout: %v %v", st, err)
	}
	rc.headers(3, false, grpcReq...) // reset mid-request
	_ = rc.fr.WriteData(3, false, []byte{0, 0, 0, 0, 9, 'a'})
	_ = rc.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	for _, c := range []struct {
		name      string
		id        uint32
		hdr       []string
		body      []byte // nil: the headers end the stream
		key, want string // the field that ends the stream ("": any answer)
	}{
		{"content-type", 5, reqWith("content-type", "text/plain"), nil, ":status", "415"}, // rejected with HTTP 415
		{"malformed method", 7, reqWith(":path", "noslash"), nil, "", ""},
		{"unknown encoding", 9, reqWith("grpc-encoding", "snappy"), nil, "grpc-status", "12"}, // grpc-go counts it: its handler answers UNIMPLEMENTED
		{"registered method", 11, reqWith(":path", "/reg.Svc/Get"), []byte("abc"), "grpc-status", "0"},
	} {
		rc.headers(c.id, c.body == nil, c.hdr...)
		if c.body != nil {
			_ = rc.fr.WriteData(c.id, true, msg(c.body))
		}
		if st, err := rc.statusOf(c.id); err != nil || st[c.key] != c.want {
			t.Fatalf("%s: %v %v", c.name, st, err)
		}
	}

	const (
		started = grpcotel.ServerCallStartedMetricName
		dur     = grpcotel.ServerCallDurationMetricName
		rcvd    = grpcotel.ServerCallRcvdCompressedTotalMessageSizeMetricName
	)
	want := map[string]int64{
		started + " grpc.method=other":                                                                                   3,
		dur + " grpc.method=other,grpc.status=UNIMPLEMENTED":                                                             1,
		rcvd + " grpc.method=other,grpc.status=UNIMPLEMENTED":                                                            1,
		grpcotel.ServerCallSentCompressedTotalMessageSizeMetricName + " grpc.method=other,grpc.status=UNIMPLEMENTED":     1,
		dur + " grpc.method=other,grpc.status=DEADLINE_EXCEEDED":                                                         1,
		dur + " grpc.method=other,grpc.status=CANCELLED":                                                                 1,
		started + " grpc.method=reg.Svc/Get":                                                                             1,
		dur + " grpc.method=reg.Svc/Get,grpc.status=OK":                                                                  1,
		rcvd + " grpc.method=other,grpc.status=DEADLINE_EXCEEDED":                                                        1,
		rcvd + " grpc.method=other,grpc.status=CANCELLED":                                                                1,
		rcvd + " grpc.method=reg.Svc/Get,grpc.status=OK":                                                                 1,
		grpcotel.ServerCallSentCompressedTotalMessageSizeMetricName + " grpc.method=other,grpc.status=DEADLINE_EXCEEDED": 1,
		grpcotel.ServerCallSentCompressedTotalMessageSizeMetricName + " grpc.method=other,grpc.status=CANCELLED":         1,
		grpcotel.ServerCallSentCompressedTotalMessageSizeMetricName + " grpc.method=reg.Svc/Get,grpc.status=OK":          1,
	}
	var got map[string]int64
	ctx := ctxT(t, 5*time.Second)
	for ctx.Err() == nil { // the reset is recorded when the server reads it
		if got = counts(t, rd); len(got) == len(want) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s: %d", k, v)
		}
	}
}

// TestMetricsRecordAllocs: recording a call (begin, note, finish)
// allocates no more than the four OTel SDK calls with ready attribute
// options do by themselves; a nil *Metrics records nothing and allocates
// nothing.
func TestMetricsRecordAllocs(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	m, err := NewMetrics(mp, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := status.New(codes.NotFound, "no")
	cl := &Call{method: "/t.S/M", opened: time.Now(), hasMsg: true, msgLen: 1024, st: st}
	record := func(m *Metrics) {
		cl.rec.a.Store(nil)
		cl.rec.done.Store(false)
		cl.rec.read = false
		m.begin(ctx, cl)
		_, _, _ = cl.Message()
		cl.rec.note(cl)
		m.finished(ctx, cl)
	}
	record(m)
	opts := m.other.ended[codes.NotFound]
	bare := testing.AllocsPerRun(200, func() {
		m.started.Add(ctx, 1, m.other.started...)
		m.duration.Record(ctx, 0.001, opts...)
		m.sent.Record(ctx, 0, opts...)
		m.rcvd.Record(ctx, 1024, opts...)
	})
	if got := testing.AllocsPerRun(200, func() { record(m) }); got > bare {
		t.Fatalf("recording a call allocates %v, the SDK calls alone %v", got, bare)
	}
	if got := testing.AllocsPerRun(100, func() { record(nil) }); got != 0 {
		t.Fatalf("metrics off: %v allocs", got)
	}
	if nm, err := NewMetrics(nil, nil); nm != nil || err != nil {
		t.Fatalf("no meter provider: %v %v", nm, err)
	}
}
