package outbound

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshgate/meshgate/meshgate/grpcserve"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// Calls of a listener with grpc_transport direct arrive as grpcserve
// Calls. They go through the same handle as grpc-go's streams (route
// lookup, authorization, split, switches, telemetry, mapping, metrics),
// over a grpc.ServerStream view of the call. The per-connection in-flight
// cap and the receive timeout are the transport's (grpcserve.Config).
//
// handle is synchronous (PrivatePool.DoPolicy), so the transport runs it
// on its workers (grpcserve.Config.Blocking). A call to a private upstream
// that needs one attempt is started by TryStart on the reading goroutine
// instead and finished from the upstream's completion (directasync.go).

// DirectHandler is the grpcserve.Handler of this listener: every call is
// served by handle, then finished with its status. Wrap, when set, may
// answer a call itself (the health service): it returns false to leave
// it to the routes.
//
// It is also a grpcserve.FastPath: the transport serves on its fast path
// the methods of unary routes, and delegates the rest (stream routes, the
// services registered on the listener's grpc-go server, unknown methods)
// to that server. Own, when set, decides first for the methods the
// listener serves itself (ok true; fast: Wrap answers them).
func (s *Server) DirectHandler(wrap func(c *grpcserve.Call, st *DirectStream) bool, own func(method string) (fast, ok bool)) grpcserve.Handler {
	return &directHandler{s: s, wrap: wrap, own: own}
}

type directHandler struct {
	s    *Server
	wrap func(*grpcserve.Call, *DirectStream) bool
	own  func(method string) (fast, ok bool)
}

// Fast reports whether method is served on the transport's fast path:
// the listener's own unary methods and the methods of unary routes
// (grpcserve.FastPath).
func (h *directHandler) Fast(method string) bool {
	if h.own != nil {
		if fast, ok := h.own(method); ok {
			return fast
		}
	}
	r := h.s.table.Load().lookup(method)
	return r != nil && r.Stream == ""
}

var directPool = sync.Pool{New: func() any { return new(DirectStream) }}

func (h *directHandler) Start(c *grpcserve.Call) {
	ds := directPool.Get().(*DirectStream)
	ds.c, ds.recvd = c, 0
	if h.wrap == nil || !h.wrap(c, ds) {
		c.Finish(h.s.handle(nil, ds))
	}
	ds.c = nil
	directPool.Put(ds)
}

// DirectStream is the grpc.ServerStream view of a grpcserve.Call: one
// request message, one response message.
type DirectStream struct {
	c     *grpcserve.Call
	recvd int
}

// Context is the call's context.
func (d *DirectStream) Context() context.Context { return d.c.Context() }

// SetHeader adds header metadata.
func (d *DirectStream) SetHeader(md metadata.MD) error { return d.c.SetHeader(md) }

// SendHeader adds header metadata (it leaves with the reply).
func (d *DirectStream) SendHeader(md metadata.MD) error { return d.c.SendHeader(md) }

// SetTrailer adds trailer metadata.
func (d *DirectStream) SetTrailer(md metadata.MD) { _ = d.c.SetTrailer(md) }

// SendMsg sets the response message: raw bytes ([]byte, *[]byte,
// *rawcodec.Message) or a protobuf message.
func (d *DirectStream) SendMsg(m any) error {
	switch m := m.(type) {
	case []byte:
		return d.c.SendMsg(m)
	case *[]byte:
		return d.c.SendMsg(*m)
	case *rawcodec.Message:
		err := d.c.SendMsg(m.Bytes())
		m.Free()
		return err
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
		return d.c.SendMsg(b)
	}
	return status.Errorf(codes.Internal, "outbound: cannot send %T", m)
}

// RecvMsg receives the request message (the first call), then io.EOF; a
// call that carried more than one message receives a second one (so the
// cardinality check sees it).
func (d *DirectStream) RecvMsg(m any) error {
	d.recvd++
	b, ok, more := d.c.Message()
	switch {
	case d.recvd == 1 && !ok, d.recvd == 2 && !more, d.recvd > 2:
		return io.EOF
	case d.recvd == 2:
		b = nil // a second message: its bytes were not kept
	}
	switch m := m.(type) {
	case *rawcodec.Message:
		if d.recvd == 1 {
			if buf := d.c.TakeMessage(); buf != nil {
				m.SetBuffer(mem.BufferSlice{buf})
				return nil
			}
		}
		m.SetBytes(b)
	case *[]byte:
		*m = append((*m)[:0], b...)
	case proto.Message:
		if err := proto.Unmarshal(b, m); err != nil {
			return status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
		}
	default:
		return status.Errorf(codes.Internal, "outbound: cannot receive into %T", m)
	}
	return nil
}
