package outbound

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/transcode"
)

// setMDMap gives every route of t the listener's configured extension ⇄
// metadata pairs.
func setMDMap(t *table, l config.Listener) {
	mm := mapping.NewMDMap(l.Metadata)
	for _, r := range t.routes {
		r.md = mm
	}
}

// replyHeader is the response header of reply resp: application extensions
// as x-mgp-ext-<k>-bin, configured pairs under their keys; pairs marked
// trailer are set as trailers on stream.
func replyHeader(r *Route, stream grpc.ServerStream, resp *codec.Frame) metadata.MD {
	hdr, trl := r.md.ReplyToMD(resp, mapping.ReplyHeader(resp))
	if trl != nil {
		stream.SetTrailer(trl)
	}
	return hdr
}

// attachBodies builds the body transcoders of t's routes (body.format
// json) from the listener's descriptor sets; errors name the field.
func (s *Server) attachBodies(t *table, l config.Listener) error {
	var set *descset.Set
	for i, rc := range l.Routes {
		if rc.Body == nil {
			continue
		}
		if set == nil && s.descs != nil {
			set = s.descs(&l)
		}
		bc, err := transcode.New(set, rc.Body)
		if err != nil {
			return fmt.Errorf("%w: listener %s: routes[%d].body: %w", ErrConfig, l.Name, i, err)
		}
		if i < len(t.routes) {
			t.routes[i].body = bc
		}
	}
	return nil
}

// transcodeRequest converts f's protobuf body to JSON for a route with
// body.format json; a body that does not parse is INVALID_ARGUMENT.
func transcodeRequest(r *Route, f *codec.Frame) error {
	return transcodeBody(r, f, (*transcode.Codec).RequestToJSON, codes.InvalidArgument, "outbound: ")
}

// transcodeReply converts a JSON reply body to protobuf; a reply that does
// not parse is the upstream's fault (INTERNAL).
func transcodeReply(r *Route, resp *codec.Frame) error {
	return transcodeBody(r, resp, (*transcode.Codec).ResponseToProto, codes.Internal, "outbound: upstream reply: ")
}

// transcodeBody replaces f's body by conv of it (a conversion of r's body
// transcoder) when r has one; a body conv refuses is a status with code.
func transcodeBody(r *Route, f *codec.Frame, conv func(*transcode.Codec, []byte) ([]byte, error), code codes.Code, prefix string) error {
	if r.body == nil {
		return nil
	}
	b, err := conv(r.body, f.Body)
	if err != nil {
		return status.Error(code, prefix+err.Error())
	}
	f.Body = b
	return nil
}

// noCancel is the cancel of a context callDeadline did not derive.
var noCancel context.CancelFunc = func() {}

// callDeadline bounds ctx by the call's own deadline, else by timeout from
// now; it returns the time left and the cancel to defer.
func callDeadline(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc, time.Duration) {
	dl, ok := ctx.Deadline()
	if ok {
		return ctx, noCancel, time.Until(dl)
	}
	dl = time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, dl)
	return ctx, cancel, time.Until(dl)
}

// requestFrame fills f (a request to a private upstream) from the call:
// metadata → uin and extensions (mapping.RequestFrame, then the route's
// configured pairs), the deadline (else the route's timeout) → ext 3. It
// returns the bounded context and its cancel (to defer, also on error).
func (r *Route) requestFrame(ctx context.Context, f *codec.Frame, dlb *[4]byte) (context.Context, context.CancelFunc, error) {
	return r.requestFrameMD(ctx, nil, f, dlb)
}

// requestFrameMD is requestFrame with the call's metadata md when the
// caller has it (a call of the direct server transport: its own, read
// only, no copy); nil: the context's (metadata.FromIncomingContext, a
// copy).
func (r *Route) requestFrameMD(ctx context.Context, md metadata.MD, f *codec.Frame, dlb *[4]byte) (context.Context, context.CancelFunc, error) {
	if md == nil {
		md, _ = metadata.FromIncomingContext(ctx)
	}
	if md != nil {
		if err := r.frameFromMD(md, f); err != nil {
			return ctx, noCancel, err
		}
	}
	ctx, cancel, remaining := callDeadline(ctx, r.Timeout)
	if remaining <= 0 {
		return ctx, cancel, status.Error(codes.DeadlineExceeded, "outbound: deadline exceeded before sending")
	}
	mapping.AppendDeadline(f, dlb, remaining)
	return ctx, cancel, nil
}

// frameFromMD fills f's uin and extensions from the call's metadata md
// (read only: values alias it).
func (r *Route) frameFromMD(md metadata.MD, f *codec.Frame) error {
	if err := mapping.RequestFrame(md, f); err != nil {
		return status.Errorf(codes.InvalidArgument, "outbound: %v", err)
	}
	r.md.RequestFromMD(md, f)
	return nil
}

// requestFrameDirect is requestFrame for a call of the direct transport
// started on its reading goroutine (directasync.go): the metadata is the
// call's own (no copy: metadata.FromIncomingContext copies), and no
// context is derived: it returns the deadline (the call's, else the
// route's timeout from now), which StartPolicy enforces itself.
func (r *Route) requestFrameDirect(ctx context.Context, md metadata.MD, f *codec.Frame, dlb *[4]byte) (time.Time, error) {
	if err := r.frameFromMD(md, f); err != nil {
		return time.Time{}, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(r.Timeout)
	}
	remaining := time.Until(dl)
	if remaining <= 0 {
		return dl, status.Error(codes.DeadlineExceeded, "outbound: deadline exceeded before sending")
	}
	mapping.AppendDeadline(f, dlb, remaining)
	return dl, nil
}

// proxyContext is the context of a gRPC → gRPC call: the call's deadline,
// else the route's timeout; its metadata minus hop-by-hop keys outgoing.
func proxyContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel, _ := callDeadline(ctx, timeout)
	var out metadata.MD
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		out = filterMD(md)
	}
	return metadata.NewOutgoingContext(ctx, out), cancel
}
