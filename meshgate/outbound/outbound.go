// Package outbound serves gRPC listeners: a gRPC service handler that
// accepts ANY method (grpc.UnknownServiceHandler with the raw bytes codec
// forced on the server, no stubs, no re-marshal) and routes the method
// either to a private upstream (it converts metadata to extensions, sends
// the frame over a multiplexed pool connection with the pool's own seq and
// converts the reply back into the gRPC response and status) or to a gRPC
// upstream (a raw-bytes L7 proxy, proxy.go).
//
// Metadata, deadline, reply extensions and status are mapped by package
// mapping (docs/protocol.md), the same code the other direction uses.
//
// A call must carry exactly one request message: none or more than one is
// answered INTERNAL "cardinality violation" (as grpc-go answers a unary
// method), without contacting the upstream. A route with oneway set sends
// the frame with ONEWAY and answers the call (empty message, OK) as soon as
// the frame is written.
//
// The routing table is immutable and swapped atomically by Update: a call
// finishes on the table (and pool) it started with.
package outbound

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/shadow"
	"github.com/meshgate/meshgate/meshgate/telemetry"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// ErrConfig wraps routing-table build errors.
var ErrConfig = errors.New("outbound: invalid routes")

// Options configure a Server.
type Options struct {
	// Logger; nil discards. Nothing above Debug per call.
	Logger *slog.Logger
	// Metrics receives the per-route request metrics; nil = none.
	Metrics *admin.Metrics
	// Limits of the listener (limits.go); zero fields take the defaults.
	Limits config.Limits
	// Telemetry records spans and access-log lines; nil = none.
	Telemetry *telemetry.Hub
	// Descriptors returns listener l's descriptor sets for routes with
	// body.format json (nil = none).
	Descriptors func(l *config.Listener) *descset.Set
	// Migration, when set, resolves splits and shadows (migrate.go).
	Migration *migrate.Controller
	// Switches returns the current service switches (nil = none).
	Switches func() *resilience.Switches
}

// Server is the outbound handler of one grpc listener.
type Server struct {
	log   *slog.Logger
	m     *admin.Metrics
	table atomic.Pointer[table]
	lim   *limiter
	fails *prometheus.CounterVec // meshgate_auth_failures_total (authz.go)
	tel   *telemetry.Hub
	descs func(*config.Listener) *descset.Set
	mig   *migrate.Controller
	sw    func() *resilience.Switches
}

// New returns a Server with an empty routing table (every method is
// UNIMPLEMENTED until Update).
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: o.Logger.With("component", "outbound"), m: o.Metrics, lim: newLimiter(o.Limits.Effective()), tel: o.Telemetry, descs: o.Descriptors, sw: o.Switches}
	var reg prometheus.Registerer
	if o.Metrics != nil {
		reg = o.Metrics.Registry
	}
	s.fails = authz.Failures(reg)
	s.mig = o.Migration
	s.table.Store(&table{exact: map[string]int{}, service: map[string]int{}})
	return s, nil
}

// Update builds a routing table from l's routes, resolving each route's
// upstream in pools, and swaps it in atomically. On error the current table
// keeps serving.
func (s *Server) Update(l config.Listener, set upstream.Set) error {
	commit, err := s.Prepare(l, set)
	if err != nil {
		return err
	}
	commit()
	return nil
}

// Prepare builds the routing table Update would install without installing
// it: commit swaps it in. A reload prepares every listener first and
// commits only when all succeeded.
func (s *Server) Prepare(l config.Listener, set upstream.Set) (commit func(), err error) {
	t, err := buildTable(l, set, s.m)
	if err != nil {
		return nil, err
	}
	t.authz = newGate(l, s.fails)
	setMDMap(t, l)
	if err := s.attachBodies(t, l); err != nil {
		return nil, err
	}
	if err := s.applyMigration(t, l, set); err != nil {
		return nil, err
	}
	return func() { s.table.Store(t) }, nil
}

// Routes returns the current routes (for /config and tests).
func (s *Server) Routes() []Route {
	t := s.table.Load()
	out := make([]Route, len(t.routes))
	for i, r := range t.routes {
		out[i] = *r
	}
	return out
}

// Handler is the grpc.StreamHandler serving every method.
func (s *Server) Handler() grpc.StreamHandler { return s.handle }

// ServerOptions are the options the grpc.Server must be built with: the
// unknown-service handler, the forced raw codec and the resource limits
// (limits.go).
func (s *Server) ServerOptions() []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.UnknownServiceHandler(s.handle),
		grpc.ForceServerCodecV2(rawcodec.Codec{}),
	}, s.lim.serverOptions()...)
}

// maxExt bounds the extensions built from metadata on the stack.
const maxExt = 8

func (s *Server) handle(_ any, stream grpc.ServerStream) error {
	start := time.Now()
	t := s.table.Load()
	method, _ := grpc.MethodFromServerStream(stream)
	if !checkMethod(method) {
		s.m.Unrouted(t.listener, codes.InvalidArgument)
		return status.Errorf(codes.InvalidArgument, "outbound: invalid method name %q", mapping.Clip(method))
	}
	if err := t.authz.authorize(stream.Context(), method); err != nil {
		return err
	}
	var r *Route
	for try := 0; ; try++ {
		r = t.lookup(method)
		if r == nil {
			s.m.Unrouted(t.listener, codes.Unimplemented)
			return status.Errorf(codes.Unimplemented, "outbound: no route for method %q", mapping.Clip(method))
		}
		r = r.pick(stream.Context()) // split: the chosen backend's route
		if r.acquire() {
			break
		}
		// The upstream was retired by a reload: take the new table.
		if try == 3 {
			r.m.Observe(codes.Unavailable, time.Since(start))
			return errUpstreamUnavailable
		}
		t = s.table.Load()
	}
	if r.switchName != "" && s.sw != nil {
		if sw := s.sw().Get(r.switchName); sw.Off() {
			r.release()
			err := switchReply(stream, sw)
			r.m.Observe(status.Code(err), time.Since(start))
			return err
		}
	}
	stream, oc := s.startTelemetry(r, method, stream)
	var err error
	switch {
	case r.GRPC != nil && r.Stream != "":
		err = s.proxyStream(r, method, stream)
	case r.GRPC != nil:
		err = s.proxy(r, method, stream, oc)
	case r.Stream != "":
		err = s.callStream(r, stream)
	default:
		err = s.call(r, stream)
	}
	r.release()
	oc.End(status.Code(err), mapping.StatusResult(err, oc.Trailer()))
	r.m.Observe(status.Code(err), time.Since(start))
	return err
}

// callState is the per-call scratch space, pooled so a call's frame,
// extension list and received message do not each cost an allocation.
type callState struct {
	f   codec.Frame
	ext [maxExt]codec.Ext
	dl  [4]byte
	msg rawcodec.Message
	// extra receives a second request message, if any (cardinality).
	extra rawcodec.Message
}

var statePool = sync.Pool{New: func() any { return new(callState) }}

func (s *Server) call(r *Route, stream grpc.ServerStream) error {
	ctx := stream.Context()
	cs := statePool.Get().(*callState)
	defer func() {
		cs.msg.Free()
		cs.f = codec.Frame{}
		clear(cs.ext[:])
		statePool.Put(cs)
	}()
	f := &cs.f
	f.Cmd, f.Ext = r.Cmd, cs.ext[:0]
	var md metadata.MD
	if ds, ok := stream.(*DirectStream); ok {
		md = ds.c.Metadata() // the call's own: no copy
	} else {
		md, _ = metadata.FromIncomingContext(ctx)
	}
	// A call answered by one reply, without a shadow copy: the deadline
	// is a value (DoPolicyUntil), no context or timer of its own.
	byValue := md != nil && !r.Oneway && r.mig == nil
	var dl time.Time
	cancel := noCancel
	var err error
	if byValue {
		dl, err = r.requestFrameDirect(ctx, md, f, &cs.dl)
	} else {
		ctx, cancel, err = r.requestFrameMD(ctx, md, f, &cs.dl)
	}
	defer cancel()
	if err != nil {
		return err
	}

	if err := recvOne(stream, &cs.msg, &cs.extra); err != nil {
		return err
	}
	f.Body = cs.msg.Bytes()
	if err := transcodeRequest(r, f); err != nil {
		return err
	}
	if r.Oneway {
		err := r.Pool.Send(ctx, f)
		if r.mig != nil && r.mig.Mirror.Want(true) {
			req := shadowRequest(ctx, "", f.Body, f, true)
			r.mig.Mirror.Submit(&req, &shadow.Outcome{})
		}
		cs.msg.Free()
		if err != nil {
			return s.poolError(ctx, r, err)
		}
		return stream.SendMsg(empty)
	}
	var resp *codec.Frame
	if byValue {
		resp, err = r.Pool.DoPolicyUntil(ctx, dl, f, &r.Policy)
	} else {
		resp, err = r.Pool.DoPolicy(ctx, f, &r.Policy)
	}
	if r.mig != nil && r.mig.Mirror.Want(false) {
		method, _ := grpc.MethodFromServerStream(stream)
		req := shadowRequest(ctx, method, f.Body, f, false)
		primary := shadow.Outcome{Result: mapping.StatusResult(upstream.Status(ctx, err), nil)}
		if err == nil {
			primary = shadow.FromFrame(resp)
		}
		r.mig.Mirror.Submit(&req, &primary)
	}
	cs.msg.Free() // the body was encoded onto the wire (or the call failed)
	return s.answer(ctx, r, stream, resp, err)
}

// answer maps the private upstream's reply resp (or the call's failure
// err) onto stream: reply extensions → header (and trailer), the result
// → status, the body → the response message. The worker path (call) and
// the asynchronous completion (directasync.go) both answer with it.
func (s *Server) answer(ctx context.Context, r *Route, stream grpc.ServerStream, resp *codec.Frame, err error) error {
	if err != nil {
		return s.poolError(ctx, r, err)
	}
	if hdr := replyHeader(r, stream, resp); hdr != nil {
		if err := stream.SetHeader(hdr); err != nil {
			return err
		}
	}
	if trl, err := mapping.ReplyStatus(resp); err != nil {
		if trl != nil {
			stream.SetTrailer(trl)
		}
		return err
	}
	// A pointer to the (heap) body: no boxing allocation, no copy.
	if err := transcodeReply(r, resp); err != nil {
		return err
	}
	return stream.SendMsg(&resp.Body)
}

// empty is the response message of a oneway route.
var empty = []byte{}

// errNoRequest and errManyRequests answer a call that does not carry
// exactly one request message (a client stream on a unary route).
var (
	errNoRequest    = status.Error(codes.Internal, "outbound: cardinality violation: the call sent no request message; routes are unary (exactly one)")
	errManyRequests = status.Error(codes.Internal, "outbound: cardinality violation: the call sent more than one request message; routes are unary (exactly one)")
)

// recvOne receives the call's only request message into m and checks that
// the client then half-closes: exactly one message, like a grpc-go unary
// handler. A unary client sends END_STREAM with its message, so the second
// receive (into extra, scratch space) returns at once.
func recvOne(stream grpc.ServerStream, m, extra *rawcodec.Message) error {
	if err := stream.RecvMsg(m); err != nil {
		if errors.Is(err, io.EOF) {
			return errNoRequest
		}
		return err
	}
	err := stream.RecvMsg(extra)
	if err == nil {
		extra.Free()
		m.Free()
		return errManyRequests
	}
	if !errors.Is(err, io.EOF) {
		m.Free()
		return err
	}
	return nil
}

// poolError maps a transport-level failure to a gRPC status.
func (s *Server) poolError(ctx context.Context, r *Route, err error) error {
	s.log.Debug("upstream call failed", "method", r.Method, "err", err)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "outbound: upstream did not answer in time")
	case errors.Is(err, context.Canceled):
		if ctx.Err() != nil {
			return status.Error(codes.Canceled, "outbound: call canceled")
		}
		return errUpstreamUnavailable
	case errors.Is(err, upstream.ErrOverloaded), errors.Is(err, privconn.ErrTooManyInFlight):
		return errUpstreamBusy
	case errors.Is(err, codec.ErrInvalidFrame):
		return errBadFrame
	case errors.Is(err, upstream.ErrNoHealthy), errors.Is(err, upstream.ErrPoolClosed), errors.Is(err, privconn.ErrClosed):
		return errUpstreamUnavailable
	}
	return errUpstreamInternal
}

func joinErrors(errs []error) error { return errors.Join(errs...) }
