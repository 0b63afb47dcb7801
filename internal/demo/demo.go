// Package demo is a small gRPC service registered without generated stubs
// (a grpc.ServiceDesc with raw-bytes handlers). The demo (meshgate-dev
// demo), the bench suite and the tests bridge private frames to it.
//
// Methods of service demo.Echo (message bodies are raw bytes):
//
//	/demo.Echo/Echo   replies with the request body.
//	/demo.Echo/Upper  replies with the body upper-cased (ASCII).
//	/demo.Echo/Fail   fails with the status described by the body:
//	                  "<code>[ <result>] <message>", e.g. "5 not here";
//	                  with code 2 and a result, the result travels in the
//	                  x-mgp-result trailer (an application error).
//	/demo.Echo/Sleep  sleeps for the duration in the body ("20ms"), honouring
//	                  the deadline, then replies with the body.
//	/demo.Echo/Meta   replies with the incoming metadata as sorted
//	                  "key=value" lines (binary values hex) and the
//	                  remaining deadline as "deadline=<ms>" when set.
package demo

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// Service is the full service name.
const Service = "demo.Echo"

// Full method names.
const (
	MethodEcho  = "/demo.Echo/Echo"
	MethodUpper = "/demo.Echo/Upper"
	MethodFail  = "/demo.Echo/Fail"
	MethodSleep = "/demo.Echo/Sleep"
	MethodMeta  = "/demo.Echo/Meta"
)

// Handler is one raw method: request bytes in, response bytes out.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

// Methods returns the demo handlers by short method name.
func Methods() map[string]Handler {
	return map[string]Handler{
		"Echo":  echo,
		"Upper": func(_ context.Context, b []byte) ([]byte, error) { return bytes.ToUpper(b), nil },
		"Fail":  fail,
		"Sleep": sleep,
		"Meta":  meta,
	}
}

// Register adds demo.Echo to s. s must use rawcodec (see ServerOptions).
func Register(s *grpc.Server) {
	RegisterRaw(s, Service, Methods())
}

// RegisterRaw registers service with raw-bytes unary handlers on s; tests
// use it to stand up stub services with handler fields.
func RegisterRaw(s grpc.ServiceRegistrar, service string, methods map[string]Handler) {
	desc := grpc.ServiceDesc{ServiceName: service, HandlerType: (*any)(nil), Metadata: "raw"}
	for _, n := range slices.Sorted(maps.Keys(methods)) {
		h := methods[n]
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: n,
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req []byte
				if err := dec(&req); err != nil {
					return nil, err
				}
				resp, err := h(ctx, req)
				if err != nil {
					return nil, err
				}
				return resp, nil
			},
		})
	}
	s.RegisterService(&desc, struct{}{})
}

// ServerOptions are the options a server hosting raw handlers needs.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(rawcodec.Codec{})}
}

// NewServer returns a grpc.Server with demo.Echo registered.
func NewServer(opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(append(ServerOptions(), opts...)...)
	Register(s)
	return s
}

func echo(_ context.Context, b []byte) ([]byte, error) { return b, nil }

func fail(ctx context.Context, b []byte) ([]byte, error) {
	f := strings.SplitN(string(b), " ", 3)
	code, err := strconv.Atoi(f[0])
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "demo: bad Fail body")
	}
	msg := ""
	if len(f) > 1 {
		msg = strings.Join(f[1:], " ")
	}
	if code == int(codes.Unknown) && len(f) > 1 {
		if _, err := strconv.Atoi(f[1]); err == nil {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(mapping.MDResult, f[1]))
			msg = ""
			if len(f) > 2 {
				msg = f[2]
			}
		}
	}
	return nil, status.Error(codes.Code(code), msg)
}

func sleep(ctx context.Context, b []byte) ([]byte, error) {
	d, err := time.ParseDuration(string(b))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "demo: bad Sleep body")
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return b, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func meta(ctx context.Context, _ []byte) ([]byte, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var lines []string
	for k, vs := range md {
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = hex.EncodeToString([]byte(v))
			}
			lines = append(lines, k+"="+v)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		lines = append(lines, fmt.Sprintf("deadline=%d", time.Until(dl).Milliseconds()))
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n")), nil
}
