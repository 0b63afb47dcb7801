package testkit

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// Stub is one configurable gRPC test server (after grpc-go's
// internal/stubserver): the demo service (demo.Echo) with the raw codec,
// plus any raw-bytes services.
type Stub struct {
	// Listener is served when set; else Start listens on 127.0.0.1:0.
	Listener net.Listener
	// Options are added to the raw-codec server options.
	Options []grpc.ServerOption
	// Services are raw-bytes services registered besides demo.Echo, by
	// service name.
	Services map[string]map[string]demo.Handler
	// Unknown, when set, answers every method no service registers: one
	// request message, one reply (a unary call of any name). Its context
	// is the call's: grpc.Method, the incoming metadata, grpc.SetHeader
	// and grpc.SetTrailer work on it.
	Unknown demo.Handler

	// Server and Addr are set by Start.
	Server *grpc.Server
	Addr   string
}

// Start serves s and stops it at cleanup; it returns the bound address.
func (s *Stub) Start(tb testing.TB) string {
	tb.Helper()
	opts := s.Options
	if s.Unknown != nil {
		opts = append(opts[:len(opts):len(opts)], grpc.UnknownServiceHandler(unknown(s.Unknown)))
	}
	s.Server = demo.NewServer(opts...)
	for name, methods := range s.Services {
		demo.RegisterRaw(s.Server, name, methods)
	}
	s.Addr = Serve(tb, s.Server, s.Listener)
	return s.Addr
}

// unknown is h as a stream handler for grpc.UnknownServiceHandler: one
// request in, h's reply or error out.
func unknown(h demo.Handler) grpc.StreamHandler {
	return func(_ any, st grpc.ServerStream) error {
		var req []byte
		if err := st.RecvMsg(&req); err != nil {
			return err
		}
		resp, err := h(st.Context(), req)
		if err != nil {
			return err
		}
		return st.SendMsg(resp)
	}
}

// AnyMethod serves a stub whose h answers every method (Stub.Unknown)
// and returns its address.
func AnyMethod(tb testing.TB, h demo.Handler, opts ...grpc.ServerOption) string {
	tb.Helper()
	return (&Stub{Options: opts, Unknown: h}).Start(tb)
}

// Serve serves gs on ln (on 127.0.0.1:0 when ln is nil) and stops it at
// cleanup; it returns the bound address.
func Serve(tb testing.TB, gs *grpc.Server, ln net.Listener) string {
	tb.Helper()
	if ln == nil {
		ln = Listen(tb, "127.0.0.1:0")
	}
	go func() { _ = gs.Serve(ln) }()
	tb.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// Demo serves the demo service on 127.0.0.1 and returns its address.
func Demo(tb testing.TB, opts ...grpc.ServerOption) string {
	tb.Helper()
	return (&Stub{Options: opts}).Start(tb)
}

// Who serves the demo service and test.Svc/Who, which answers name, and
// returns the address.
func Who(tb testing.TB, name string, opts ...grpc.ServerOption) string {
	tb.Helper()
	return (&Stub{Options: opts, Services: map[string]map[string]demo.Handler{"test.Svc": WhoMethods(name)}}).Start(tb)
}

// WhoMethods is test.Svc with Who answering name.
func WhoMethods(name string) map[string]demo.Handler {
	return map[string]demo.Handler{"Who": func(context.Context, []byte) ([]byte, error) { return []byte(name), nil }}
}

// Client is a grpc-go client of addr with the raw codec (requests and
// replies are []byte), plaintext unless opts set credentials, closed at
// cleanup.
func Client(tb testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	return Dial(tb, addr, append([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{}))}, opts...)...)
}

// Dial is a grpc-go client of addr with the default (proto) codec,
// plaintext unless opts set credentials, closed at cleanup.
func Dial(tb testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// ClientTLS is Client over TLS with cfg.
func ClientTLS(tb testing.TB, addr string, cfg *tls.Config, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	return Client(tb, addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, opts...)...)
}
