package migrate

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/shadow"
)

// GRPCTarget is a gRPC upstream (a *grpcpool.Pool).
type GRPCTarget interface {
	Acquire() bool
	Release()
	Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error
}

// FrameTarget is a private upstream (an *upstream.PrivatePool).
type FrameTarget interface {
	Acquire() bool
	Release()
	Do(ctx context.Context, req *codec.Frame) (*codec.Frame, error)
	Send(ctx context.Context, req *codec.Frame) error
}

// GRPCShadow calls a shadow copy as a unary gRPC call of method ("" = the
// request's own method) on u, with the request's uin, caller and
// application extensions as metadata (as a private listener maps them).
func GRPCShadow(u GRPCTarget, method string) shadow.Caller {
	return shadow.CallerFunc(func(ctx context.Context, req *shadow.Request) shadow.Outcome {
		m := method
		if m == "" {
			m = req.Method
		}
		if !u.Acquire() {
			return shadow.Outcome{Err: shadow.ErrSkipped}
		}
		defer u.Release()
		md := mapping.NewRequestMD()
		f := requestFrame(req, 0)
		md.FromFrame(&f, 0, false)
		var resp []byte
		var hdr, trl metadata.MD
		err := u.Invoke(metadata.NewOutgoingContext(ctx, md.MD), m, req.Body, &resp, grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			if cerr := ctxErr(ctx); cerr != nil {
				return shadow.Outcome{Err: cerr}
			}
		}
		return shadow.FromGRPC(resp, err, hdr, trl)
	})
}

// PrivateShadow sends a shadow copy as a frame of cmd (0 = the request's
// own cmd) to u, with the request's uin, caller and application extensions.
// A call that gets no reply frame is an error outcome.
func PrivateShadow(u FrameTarget, cmd uint32) shadow.Caller {
	return shadow.CallerFunc(func(ctx context.Context, req *shadow.Request) shadow.Outcome {
		if !u.Acquire() {
			return shadow.Outcome{Err: shadow.ErrSkipped}
		}
		defer u.Release()
		c := cmd
		if c == 0 {
			c = req.Cmd
		}
		f := requestFrame(req, c)
		if req.Oneway {
			f.Flags |= codec.FlagOneway
			return shadow.Outcome{Err: u.Send(ctx, &f)}
		}
		resp, err := u.Do(ctx, &f)
		if err != nil {
			return shadow.Outcome{Err: err}
		}
		o := shadow.FromFrame(resp)
		o.Body = bytes.Clone(o.Body) // the reply may alias a pooled buffer
		o.Ext = cloneExts(o.Ext)
		return o
	})
}

func requestFrame(req *shadow.Request, cmd uint32) codec.Frame {
	f := codec.Frame{Cmd: cmd, UIN: req.UIN, Body: req.Body, Ext: make([]codec.Ext, 0, len(req.Ext)+1)}
	if req.Caller != "" {
		f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtCaller, Value: []byte(req.Caller)})
	}
	for _, e := range req.Ext {
		if e.Key >= codec.ExtAppMin {
			f.Ext = append(f.Ext, e)
		}
	}
	return f
}

func cloneExts(in []codec.Ext) []codec.Ext {
	out := make([]codec.Ext, len(in))
	for i, e := range in {
		out[i] = codec.Ext{Key: e.Key, Value: bytes.Clone(e.Value)}
	}
	return out
}

// ctxErr is ctx.Err(), or context.DeadlineExceeded once ctx's deadline has
// passed even if its timer has not fired yet (a loaded machine can deliver
// the upstream's own DEADLINE_EXCEEDED, sent when the propagated deadline
// expired there, before it).
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
