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
	DirectHandler(wrap func(*grpcserve.Call, *outbound.DirectStream) bool, own func(method string) (fast, ok bool)) grpcserve.Handler
}

// directServer builds the direct HTTP/2 server transport of grpc listener
// lc (config.Listener.DirectServer): its limits, TLS (ALPN h2) and the
// health service's unary Check beside the unary routes on the fast path;
// every other stream (stream routes, health Watch, the push API,
// reflection, unknown methods) is delegated to the listener's grpc-go
// server g.gs (its ServeHTTP: grpc-go's handler transport), which serves
// it as a grpc-go listener would.
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
		Handler:              dh.DirectHandler(g.serveHealth, healthFast),
		Fallback:             g.gs,
		MaxConcurrentStreams: lim.MaxConcurrentStreams, MaxInFlightPerConn: lim.MaxInFlightPerConnection,
		StreamWindow: lim.StreamWindow, ConnWindow: lim.ConnWindow,
		MaxRecvMsgSize: lc.RecvSize(), MaxSendMsgSize: lc.SendSize(), MaxHeaderListSize: uint32(lim.MaxHeaderListSize),
		HandshakeTimeout: lim.RecvTimeout, RecvTimeout: lim.RecvTimeout, WriteTimeout: lim.SendTimeout,
		MaxConnectionIdle: lim.MaxConnectionIdle, MaxConnectionAge: lim.MaxConnectionAge, MaxConnectionAgeGrace: lim.MaxConnectionAgeGrace,
		KeepaliveTime: lim.KeepaliveTime, KeepaliveTimeout: lim.KeepaliveTimeout, KeepaliveMinTime: lim.KeepaliveMinTime,
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

const healthSvc = "/grpc.health.v1.Health/"

// healthFast: the health service's Check is answered on the fast path
// (serveHealth); its other methods (Watch) are delegated to grpc-go's
// registered service.
func healthFast(method string) (fast, ok bool) {
	m, ok := strings.CutPrefix(method, healthSvc)
	return ok && m == "Check", ok
}

// serveHealth answers grpc.health.v1.Health/Check from the listener's
// health server, as grpc-go's registered service does (the other health
// methods are delegated: healthFast). Other methods go to the routes
// (false).
func (g *grpcServer) serveHealth(c *grpcserve.Call, ds *outbound.DirectStream) bool {
	m, ok := strings.CutPrefix(c.Method(), healthSvc)
	if !ok {
		return false
	}
	if m != "Check" {
		c.Finish(status.Errorf(codes.Unimplemented, "unknown method %s for service grpc.health.v1.Health", m))
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
