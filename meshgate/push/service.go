package push

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/push/pushpb"
)

// Full method names of the push API.
const (
	ServiceName     = "meshgate.v1.Push"
	MethodSend      = "/meshgate.v1.Push/Send"
	MethodSendBatch = "/meshgate.v1.Push/SendBatch"
)

// MaxBatch bounds the items of one SendBatch.
const MaxBatch = 1024

// Deliverer is what the Service pushes through (a *Registry).
type Deliverer interface {
	Deliver(uin uint64, f *codec.Frame) (int, error)
}

// Authorizer decides whether the caller of ctx may call method; a non-nil
// error (a gRPC status) refuses the call. nil allows every call.
type Authorizer func(ctx context.Context, method string) error

// Service implements meshgate.v1.Push over a Deliverer.
type Service struct {
	d        Deliverer
	listener string
	m        *Metrics
	authz    Authorizer
	seq      atomic.Uint32
}

// NewService returns the push API of listener (the metrics label) over d.
func NewService(listener string, d Deliverer, m *Metrics, authz Authorizer) *Service {
	return &Service{d: d, listener: listener, m: m, authz: authz}
}

// Register adds the service to srv.
func (s *Service) Register(srv grpc.ServiceRegistrar) { srv.RegisterService(&serviceDesc, s) }

// pushServer is the handler type grpc-go checks the implementation against.
type pushServer interface {
	Send(context.Context, *pushpb.SendRequest) (*pushpb.SendResponse, error)
	SendBatch(context.Context, *pushpb.SendBatchRequest) (*pushpb.SendBatchResponse, error)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*pushServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Send", Handler: sendHandler},
		{MethodName: "SendBatch", Handler: sendBatchHandler},
	},
	Metadata: "meshgate/push/pushpb/push.proto",
}

var (
	sendHandler      = unaryHandler(MethodSend, pushServer.Send)
	sendBatchHandler = unaryHandler(MethodSendBatch, pushServer.SendBatch)
)

// unaryHandler is the grpc-go method handler of a unary method of
// pushServer: decode the request, then call through the interceptor.
func unaryHandler[Req, Resp any](fullMethod string, call func(pushServer, context.Context, *Req) (Resp, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(Req)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) {
			return call(srv.(pushServer), ctx, req.(*Req))
		}
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, h)
	}
}

// Send implements meshgate.v1.Push/Send.
func (s *Service) Send(ctx context.Context, req *pushpb.SendRequest) (*pushpb.SendResponse, error) {
	if s.authz != nil {
		if err := s.authz(ctx, MethodSend); err != nil {
			s.m.Inc(s.listener, req.GetCmd(), OutcomeInvalid)
			return nil, err
		}
	}
	n, err := s.send(req)
	if err != nil {
		return nil, err
	}
	return &pushpb.SendResponse{Delivered: uint32(n)}, nil
}

// SendBatch implements meshgate.v1.Push/SendBatch: each item gets its own
// outcome; the call fails only when refused as a whole.
func (s *Service) SendBatch(ctx context.Context, req *pushpb.SendBatchRequest) (*pushpb.SendBatchResponse, error) {
	if s.authz != nil {
		if err := s.authz(ctx, MethodSendBatch); err != nil {
			return nil, err
		}
	}
	if len(req.GetItems()) > MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "push: %d items, at most %d per batch", len(req.GetItems()), MaxBatch)
	}
	out := &pushpb.SendBatchResponse{Outcomes: make([]*pushpb.Outcome, len(req.GetItems()))}
	for i, it := range req.GetItems() {
		n, err := s.send(it)
		st := status.Convert(err)
		out.Outcomes[i] = &pushpb.Outcome{Code: int32(st.Code()), Message: st.Message(), Delivered: uint32(n)}
	}
	return out, nil
}

// maxExt bounds the extensions of one push.
const maxExt = 16

func (s *Service) send(req *pushpb.SendRequest) (int, error) {
	cmd := req.GetCmd()
	if req.GetUin() == 0 {
		s.m.Inc(s.listener, cmd, OutcomeInvalid)
		return 0, status.Error(codes.InvalidArgument, "push: uin is required")
	}
	var ext [maxExt]codec.Ext
	f := codec.Frame{Cmd: cmd, UIN: req.GetUin(), Flags: codec.FlagPush, Seq: s.seq.Add(1), Body: req.GetBody(), Ext: ext[:0]}
	if len(req.GetExtensions()) > maxExt {
		s.m.Inc(s.listener, cmd, OutcomeInvalid)
		return 0, status.Errorf(codes.InvalidArgument, "push: %d extensions, at most %d", len(req.GetExtensions()), maxExt)
	}
	for i, e := range req.GetExtensions() {
		if err := checkExt(e.GetKey()); err != nil {
			s.m.Inc(s.listener, cmd, OutcomeInvalid)
			return 0, status.Errorf(codes.InvalidArgument, "push: extensions[%d]: %v", i, err)
		}
		f.Ext = append(f.Ext, codec.Ext{Key: uint16(e.GetKey()), Value: e.GetValue()})
	}
	n, err := s.d.Deliver(req.GetUin(), &f)
	switch {
	case err == nil:
		s.m.Inc(s.listener, cmd, OutcomeOK)
		return n, nil
	case errors.Is(err, ErrNotConnected):
		s.m.Inc(s.listener, cmd, OutcomeNotFound)
		return 0, status.Errorf(codes.NotFound, "push: uin %d is not connected to this replica", req.GetUin())
	case errors.Is(err, ErrFull):
		s.m.Inc(s.listener, cmd, OutcomeExhausted)
		return 0, status.Errorf(codes.ResourceExhausted, "push: uin %d: %v", req.GetUin(), err)
	case errors.Is(err, codec.ErrInvalidFrame):
		s.m.Inc(s.listener, cmd, OutcomeInvalid)
		return 0, status.Errorf(codes.InvalidArgument, "push: %v", err)
	default:
		s.m.Inc(s.listener, cmd, OutcomeFailed)
		return 0, status.Errorf(codes.Internal, "push: %v", err)
	}
}

// checkExt refuses keys a pusher must not set: 0 (padding), 2 (auth),
// 3 (deadline) and 5 (error message) mean something else on a frame, and
// keys beyond 16 bits do not fit.
func checkExt(k uint32) error {
	switch {
	case k == 0 || k > 0xFFFF:
		return fmt.Errorf("key %d out of range [1, 65535]", k)
	case k == uint32(codec.ExtAuth) || k == uint32(codec.ExtDeadline) || k == uint32(codec.ExtErrorMsg):
		return fmt.Errorf("key %d is reserved", k)
	}
	return nil
}
