// Package grpcmeter holds what MeshGate's own gRPC transports (the direct
// client, meshgate/grpcdirect, and the direct server, meshgate/grpcserve)
// share with grpc-go's OpenTelemetry instrumentation
// (google.golang.org/grpc/stats/opentelemetry) so that the instruments they
// record are grpc-go's: the meter (scope "grpc-go", grpc-go's version), the
// bucket boundaries and grpc-go's names of status codes in the grpc.status
// attribute.
package grpcmeter

import (
	"strconv"

	otelmetric "go.opentelemetry.io/otel/metric"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcotel "google.golang.org/grpc/stats/opentelemetry"
)

// MeterName is the instrumentation scope of grpc-go's metrics.
const MeterName = "grpc-go"

// Meter is the meter grpc-go's instrumentation creates its instruments
// with on mp: an instrument of the same name made on it is the same
// instrument.
func Meter(mp otelmetric.MeterProvider) otelmetric.Meter {
	return mp.Meter(MeterName, otelmetric.WithInstrumentationVersion(grpc.Version))
}

// Latency and Size are the bucket boundaries of grpc-go's duration and
// message-size histograms.
var (
	Latency = otelmetric.WithExplicitBucketBoundaries(grpcotel.DefaultLatencyBounds...)
	Size    = otelmetric.WithExplicitBucketBoundaries(grpcotel.DefaultSizeBounds...)
)

// StatusName is grpc-go's name of a code in metrics (codes'
// canonicalString, which grpc-go keeps internal): the google.rpc.Code enum
// name ("NOT_FOUND"), "CODE(n)" for a code outside it.
func StatusName(c codes.Code) string {
	if n, ok := rpccode.Code_name[int32(c)]; ok && c <= codes.Unauthenticated {
		return n
	}
	return "CODE(" + strconv.FormatInt(int64(c), 10) + ")"
}
