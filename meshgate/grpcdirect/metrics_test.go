package grpcdirect

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/codes"
)

// TestMetricsRecordAllocs: recording a call (a known method, any status)
// allocates no more than the five OTel SDK calls with ready attribute
// options do by themselves: attribute sets are not rebuilt per call.
func TestMetricsRecordAllocs(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	m, err := NewMetrics(mp, "meshgate:///u")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cl := &call{total: 1029, sent: 1029, msgs: 1, msgLen: 1024, msgN: 1024}
	record := func() {
		var rec callRecord
		rec.begin(m, "/t.Svc/M", true)
		rec.startAttempt(ctx)
		rec.endAttempt(ctx, cl, codes.NotFound)
		rec.endCall(ctx, codes.NotFound)
	}
	record()
	a := m.forMethod("/t.Svc/M", true)
	opts := a.ended[codes.NotFound]
	bare := testing.AllocsPerRun(200, func() {
		m.attemptStarted.Add(ctx, 1, a.started...)
		m.attemptDuration.Record(ctx, 0.001, opts...)
		m.attemptSent.Record(ctx, 1024, opts...)
		m.attemptRcvd.Record(ctx, 1024, opts...)
		m.callDuration.Record(ctx, 0.001, opts...)
	})
	if got := testing.AllocsPerRun(200, record); got > bare {
		t.Fatalf("recording a call allocates %v, the SDK calls alone %v", got, bare)
	}
	var none *Metrics
	if got := testing.AllocsPerRun(100, func() {
		var rec callRecord
		rec.begin(none, "/t.Svc/M", true)
		rec.startAttempt(ctx)
		rec.endAttempt(ctx, cl, codes.OK)
		rec.endCall(ctx, codes.OK)
	}); got != 0 {
		t.Fatalf("metrics off: %v allocs", got)
	}
}
