// Package outbound is MeshGate's gRPC → private direction: a gRPC service
// handler that accepts ANY method (grpc.UnknownServiceHandler with the raw
// bytes codec forced on the server, no stubs, no re-marshal), routes the
// method to a private command and upstream pool, converts metadata to
// extensions, sends the frame over a multiplexed pool connection (with the
// pool's own seq) and converts the reply back into the gRPC response and
// status.
//
// Metadata ⇄ extensions (shared/PROTOCOL.md):
//
//	x-mgp-uin (decimal)          frame uin (bad value → INVALID_ARGUMENT)
//	traceparent                  ext 1
//	grpc deadline / route timeout ext 3, remaining milliseconds
//	x-mgp-caller                 ext 4
//	x-mgp-ext-<key>-bin          app ext <key> (decimal, >= 0x8000), both ways
//	ext 5 of a failed reply      status message
//	result outside the table     UNKNOWN + trailer x-mgp-result: <n>
//
// The routing table is immutable and swapped atomically by Update: a call
// finishes on the table (and pool) it started with.
package outbound

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// Metadata keys.
const (
	MDUIN         = "x-mgp-uin"
	MDCaller      = "x-mgp-caller"
	MDTraceparent = "traceparent"
	MDResult      = "x-mgp-result"
	mdExtPrefix   = "x-mgp-ext-"
	mdExtSuffix   = "-bin"
)

// ErrConfig wraps routing-table build errors.
var ErrConfig = errors.New("outbound: invalid routes")

// Options configure a Server.
type Options struct {
	// Logger; nil discards. Nothing above Debug per call.
	Logger *slog.Logger
	// Registerer receives the meshgate_outbound_* metrics; nil = none.
	Registerer prometheus.Registerer
	// DefaultTimeout applies to routes without a timeout when the call
	// carries no deadline; default config.DefaultTimeout.
	DefaultTimeout time.Duration
}

// Server is the outbound handler of one grpc listener.
type Server struct {
	log   *slog.Logger
	defTO time.Duration
	m     *metrics
	table atomic.Pointer[table]
	fails *prometheus.CounterVec // meshgate_auth_failures_total (authz.go)
}

// New returns a Server with an empty routing table (every method is
// UNIMPLEMENTED until Update).
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DefaultTimeout <= 0 {
		o.DefaultTimeout = config.DefaultTimeout
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{log: o.Logger.With("component", "outbound"), defTO: o.DefaultTimeout, m: m}
	s.fails = authz.Failures(o.Registerer)
	s.table.Store(&table{exact: map[string]int{}, service: map[string]int{}})
	return s, nil
}

// Update builds a routing table from l's routes, resolving each route's
// upstream in pools, and swaps it in atomically. On error the current table
// keeps serving.
func (s *Server) Update(l config.Listener, pools map[string]*upstream.PrivatePool) error {
	t, err := buildTable(l, pools, s.defTO, s.m)
	if err != nil {
		return err
	}
	t.authz = newGate(l, s.fails)
	s.table.Store(t)
	return nil
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
// unknown-service handler and the forced raw codec.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.UnknownServiceHandler(s.handle),
		grpc.ForceServerCodecV2(rawcodec.Codec{}),
	}
}

// maxExt bounds the extensions built from metadata on the stack.
const maxExt = 8

func (s *Server) handle(_ any, stream grpc.ServerStream) error {
	start := time.Now()
	t := s.table.Load()
	method, _ := grpc.MethodFromServerStream(stream)
	if !checkMethod(method) {
		s.m.unmatched(t.listener, codes.InvalidArgument)
		return status.Errorf(codes.InvalidArgument, "outbound: invalid method name %q", method)
	}
	if err := t.authz.authorize(stream.Context(), method); err != nil {
		return err
	}
	r := t.lookup(method)
	if r == nil {
		s.m.unmatched(t.listener, codes.Unimplemented)
		return status.Errorf(codes.Unimplemented, "outbound: no route for method %s", method)
	}
	err := s.call(r, stream)
	r.m.observe(status.Code(err), time.Since(start))
	return err
}

// callState is the per-call scratch space, pooled so a call's frame,
// extension list and received message do not each cost an allocation.
type callState struct {
	f   codec.Frame
	ext [maxExt]codec.Ext
	dl  [4]byte
	msg rawcodec.Message
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
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if err := fromMetadata(md, f); err != nil {
			return err
		}
	}
	var cancel context.CancelFunc
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(r.Timeout)
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	remaining := time.Until(dl)
	if remaining <= 0 {
		return status.Error(codes.DeadlineExceeded, "outbound: deadline exceeded before sending")
	}
	ms := uint32(min(remaining.Milliseconds(), 0xffffffff))
	if ms == 0 {
		ms = 1
	}
	f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtDeadline, Value: mgp.PutDeadline(&cs.dl, ms)})

	if err := stream.RecvMsg(&cs.msg); err != nil {
		return err
	}
	f.Body = cs.msg.Bytes()
	resp, err := r.Pool.Do(ctx, f)
	cs.msg.Free() // the body was encoded onto the wire (or the call failed)
	if err != nil {
		return s.poolError(ctx, r, err)
	}
	if hdr := appExtMD(resp); hdr != nil {
		if err := stream.SetHeader(hdr); err != nil {
			return err
		}
	}
	if resp.Result != codec.ResultOK {
		return resultStatus(stream, resp)
	}
	// A pointer to the (heap) body: no boxing allocation, no copy.
	return stream.SendMsg(&resp.Body)
}

// bytesOf views s as bytes without copying. The codec only reads extension
// values while encoding, and the metadata strings outlive the call.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// fromMetadata fills f's uin and extensions from incoming metadata.
func fromMetadata(md metadata.MD, f *codec.Frame) error {
	if v := md[MDUIN]; len(v) > 0 {
		uin, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "outbound: %s must be a decimal uint64, got %q", MDUIN, v[0])
		}
		f.UIN = uin
	}
	if v := md[MDTraceparent]; len(v) > 0 {
		f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtTraceparent, Value: bytesOf(v[0])})
	}
	if v := md[MDCaller]; len(v) > 0 {
		f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtCaller, Value: bytesOf(v[0])})
	}
	for k, v := range md {
		if len(v) == 0 || !strings.HasPrefix(k, mdExtPrefix) || !strings.HasSuffix(k, mdExtSuffix) {
			continue
		}
		num := k[len(mdExtPrefix) : len(k)-len(mdExtSuffix)]
		key, err := strconv.ParseUint(num, 10, 16)
		if err != nil || uint16(key) < codec.ExtAppMin {
			return status.Errorf(codes.InvalidArgument, "outbound: metadata %q: key must be a decimal in [%d, 65535]", k, codec.ExtAppMin)
		}
		f.Ext = append(f.Ext, codec.Ext{Key: uint16(key), Value: bytesOf(v[0])})
	}
	return nil
}

// appExtMD returns response header metadata for resp's app extensions.
func appExtMD(resp *codec.Frame) metadata.MD {
	var md metadata.MD
	for _, e := range resp.Ext {
		if e.Key < codec.ExtAppMin {
			continue
		}
		if md == nil {
			md = metadata.MD{}
		}
		k := mdExtPrefix + strconv.FormatUint(uint64(e.Key), 10) + mdExtSuffix
		md[k] = append(md[k], string(e.Value))
	}
	return md
}

// resultStatus turns a failed reply into a gRPC status (and the
// x-mgp-result trailer for application results).
func resultStatus(stream grpc.ServerStream, resp *codec.Frame) error {
	code, app := codec.GRPCCode(resp.Result)
	msg := ""
	if v, ok := resp.ExtValue(codec.ExtErrorMsg); ok {
		msg = string(v)
	} else {
		msg = "upstream result " + strconv.Itoa(int(resp.Result))
	}
	if app {
		stream.SetTrailer(metadata.MD{MDResult: []string{strconv.Itoa(int(resp.Result))}})
	}
	return status.Error(codes.Code(code), msg)
}

// poolError maps a transport-level failure to a gRPC status.
func (s *Server) poolError(ctx context.Context, r *Route, err error) error {
	s.log.Debug("upstream call failed", "method", r.Method, "err", err)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "outbound: %s: upstream did not answer in time", r.Pool.Name())
	case errors.Is(err, context.Canceled):
		if ctx.Err() != nil {
			return status.Error(codes.Canceled, "outbound: call canceled")
		}
		return status.Errorf(codes.Unavailable, "outbound: %v", err)
	case errors.Is(err, upstream.ErrOverloaded), errors.Is(err, privconn.ErrTooManyInFlight):
		return status.Errorf(codes.ResourceExhausted, "outbound: %v", err)
	case errors.Is(err, codec.ErrInvalidFrame):
		return status.Errorf(codes.InvalidArgument, "outbound: %v", err)
	case errors.Is(err, upstream.ErrNoHealthy), errors.Is(err, upstream.ErrPoolClosed), errors.Is(err, privconn.ErrClosed):
		return status.Errorf(codes.Unavailable, "outbound: %v", err)
	}
	return status.Errorf(codes.Internal, "outbound: %v", err)
}

func joinErrors(errs []error) error { return errors.Join(errs...) }
