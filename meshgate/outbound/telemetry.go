package outbound

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/telemetry"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// startTelemetry begins the span and access-log record of a call routed
// by r (nil and stream itself when telemetry is off). The returned stream
// carries the span and a traceparent naming it, which becomes the frame's
// ext 1.
func (s *Server) startTelemetry(r *Route, method string, stream grpc.ServerStream) (grpc.ServerStream, *telemetry.Call) {
	if !s.tel.Enabled() {
		return stream, nil
	}
	var uin uint64
	if v := metadata.ValueFromIncomingContext(stream.Context(), mapping.MDUIN); len(v) > 0 {
		uin, _ = strconv.ParseUint(v[0], 10, 64)
	}
	info := telemetry.Info{
		Listener: s.table.Load().listener, Direction: telemetry.GRPCToMGP,
		Route: telemetry.RouteName(r.Cmd, r.Method), Cmd: r.Cmd, Method: method,
		Upstream: r.Upstream, UIN: uin,
	}
	if r.GRPC != nil { // gRPC → gRPC proxy: no cmd
		to := r.CallMethod
		if to == "" {
			to = r.Method
		}
		info.Direction, info.Route, info.Cmd = telemetry.GRPCToGRPC, telemetry.ProxyRouteName(r.Method, to), 0
	}
	ws, oc := s.tel.WrapStream(stream, info)
	if oc == nil {
		return stream, nil
	}
	if r.GRPC != nil { // the endpoint comes from the call's peer (oc.CallOptions)
		return ws, oc
	}
	// The pool reports the endpoint it sends to (same goroutine).
	return &ctxStream{ServerStream: ws, ctx: upstream.WithEndpointSink(ws.Context(), &oc.Endpoint)}, oc
}

// ctxStream overrides a stream's context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }
