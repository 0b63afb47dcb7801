package runtime

import (
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcserve"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// directHandler is what a grpc listener with grpc_transport direct needs
// of its bridge (outbound.Server).
type directHandler interface {
	DirectHandler(wrap func(*grpcserve.Call, *outbound.DirectStream) bool) grpcserve.Handler
}

// directServer builds the direct HTTP/2 server transport of grpc listener
// lc (config.Listener.DirectServer): its limits, TLS (ALPN h2) and the
// health service's unary Check beside the routes.
func (r *Runtime) directServer(lc *config.Listener, ts *tlsconf.Server, g *grpcServer) (*grpcserve.Server, error) {
	dh, ok := g.bridge.(directHandler)
	if !ok {
		return nil, status.Error(codes.Internal, "grpc listener bridge has no direct handler")
	}
	errs, err := grpcserve.NewErrorCounter(r.metrics.Registry)
	if err != nil {
		return nil, err
	}
	mx, err := grpcserve.NewMetrics(r.gm.MeterProvider(), g.gs.GetServiceInfo()) // nil without telemetry.grpc_metrics
	if err != nil {
		return nil, err
	}
	lim := lc.Limits.Effective()
	cfg := grpcserve.Config{
		Name: lc.Name, Blocking: true, Errors: errs, Logger: r.opts.Logger, Metrics: mx,
		Handler:              dh.DirectHandler(g.serveHealth),
		MaxConcurrentStreams: lim.MaxConcurrentStreams, MaxInFlightPerConn: lim.MaxInFlightPerConnection,
		StreamWindow: lim.StreamWindow, ConnWindow: lim.ConnWindow,
		MaxRecvMsgSize: lc.RecvSize(), MaxSendMsgSize: lc.SendSize(), MaxHeaderListSize: uint32(lim.MaxHeaderListSize),
		HandshakeTimeout: lim.RecvTimeout, RecvTimeout: lim.RecvTimeout, WriteTimeout: lim.SendTimeout,
		MaxConnectionIdle: lim.MaxConnectionIdle, MaxConnectionAge: lim.MaxConnectionAge, MaxConnectionAgeGrace: lim.MaxConnectionAgeGrace,
		KeepaliveMinTime: lim.KeepaliveMinTime,
	}
	if ts != nil {
		tc := ts.Config().Clone()
		if !slices.Contains(tc.NextProtos, "h2") {
			tc.NextProtos = append(tc.NextProtos, "h2")
		}
		cfg.TLS = tc
	}
	return grpcserve.New(cfg), nil
}

// serveHealth answers grpc.health.v1.Health/Check from the listener's
// health server, as grpc-go's registered service does; the streaming
// Watch and every other health method are UNIMPLEMENTED on the direct
// transport. Other methods go to the routes (false).
func (g *grpcServer) serveHealth(c *grpcserve.Call, ds *outbound.DirectStream) bool {
	const svc = "/grpc.health.v1.Health/"
	m, ok := strings.CutPrefix(c.Method(), svc)
	if !ok {
		return false
	}
	if m != "Check" {
		c.Finish(status.Errorf(codes.Unimplemented, "unknown method %s for service grpc.health.v1.Health (streaming methods are not served by grpc_transport direct)", m))
		return true
	}
	var req healthpb.HealthCheckRequest
	if err := ds.RecvMsg(&req); err != nil {
		c.Finish(err)
		return true
	}
	resp, err := g.health.Check(c.Context(), &req)
	if err == nil {
		err = ds.SendMsg(resp)
	}
	c.Finish(err)
	return true
}
