package inbound

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/telemetry"
	"github.com/meshgate/meshgate/meshgate/transcode"
)

// startTelemetry begins the span and access-log record of q (nil when
// telemetry is off). It replaces the traceparent of q's outgoing metadata
// with the new span's, so the upstream call is the span's child.
func (q *request) startTelemetry() *telemetry.Call {
	h := q.c.s.opts.Telemetry
	if !h.Enabled() {
		return nil
	}
	r := q.r
	_, oc := h.Start(q.c.ctx, q.md.MD, telemetry.Info{
		Listener: q.c.s.opts.Name, Direction: telemetry.MGPToGRPC,
		Route: telemetry.RouteName(r.Cmd, r.Method), Cmd: r.Cmd, Method: r.Method,
		Upstream: r.UpstreamName, UIN: q.uin,
	})
	if oc != nil {
		oc.BytesIn = q.req.Len()
	}
	return oc
}

// endTelemetry records q's outcome (err from the upstream call).
func (q *request) endTelemetry(oc *telemetry.Call, err error) {
	if oc == nil {
		return
	}
	oc.BytesOut = q.resp.Len()
	oc.End(status.Code(err), mapping.StatusResult(err, q.trailer))
}

// startForwardTelemetry begins the span and access-log record of a
// private → private request (nil when telemetry is off). The request's
// ext 1 (W3C traceparent) is the parent; the frame sent upstream carries
// the new span's traceparent in its place.
func (q *request) startForwardTelemetry() *telemetry.Call {
	h := q.c.s.opts.Telemetry
	if !h.Enabled() {
		return nil
	}
	r := q.r
	md := metadata.MD{}
	ti := -1
	for i := range q.fwd.Ext {
		if q.fwd.Ext[i].Key == codec.ExtTraceparent {
			ti = i
			md[mapping.MDTraceparent] = []string{string(q.fwd.Ext[i].Value)}
			break
		}
	}
	_, oc := h.Start(q.c.ctx, md, telemetry.Info{
		Listener: q.c.s.opts.Name, Direction: telemetry.MGPToMGP,
		Route: telemetry.ProxyRouteName(telemetry.CmdName(r.Cmd), telemetry.CmdName(r.SendCmd)), Cmd: r.Cmd,
		Upstream: r.UpstreamName, UIN: q.uin,
	})
	if oc == nil {
		return nil
	}
	oc.BytesIn = len(q.fwd.Body)
	if v := md[mapping.MDTraceparent]; len(v) > 0 {
		tp := []byte(v[0])
		if ti >= 0 {
			q.fwd.Ext[ti].Value = tp
		} else {
			q.fwd.Ext = append(q.fwd.Ext, codec.Ext{Key: codec.ExtTraceparent, Value: tp})
		}
	}
	return oc
}

// endForwardTelemetry records a private → private outcome: err from the
// pool, else the upstream's reply result.
func (q *request) endForwardTelemetry(oc *telemetry.Call, err error, resp *codec.Frame) {
	if oc == nil {
		return
	}
	if err != nil || resp == nil {
		oc.End(status.Code(err), mapping.StatusResult(err, nil))
		return
	}
	oc.BytesOut = len(resp.Body)
	code, _ := codec.GRPCCode(resp.Result)
	oc.End(codes.Code(code), resp.Result)
}

// mapMetadata applies the table's configured extension ⇄ metadata pairs to
// q's request metadata and remembers them for the reply (gRPC upstreams
// only: a private upstream gets every extension as it came).
func (q *request) mapMetadata(t *Table, f *codec.Frame) {
	if q.r.Private != nil {
		return
	}
	q.mm = t.MD
	q.mm.RequestToMD(f, q.md.MD)
}

// transcodeRequest converts q's JSON request body to protobuf when the
// route declares body.format json; a body that does not parse is the
// client's error (INVALID_ARGUMENT → result 2, the message naming the
// type and field) and the upstream is not called.
func (q *request) transcodeRequest() error {
	if q.r.Body == nil {
		return nil
	}
	pb, err := q.r.Body.RequestToProto(q.req.Bytes())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	q.req.SetBytes(pb)
	return nil
}

// replyBody is the reply frame's body for a call that ended with err: the
// response bytes, converted to JSON when the route declares it (a reply
// that does not convert is INTERNAL).
func (q *request) replyBody(err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	if q.r.Body == nil {
		return q.resp.Bytes(), nil
	}
	js, cerr := q.r.Body.ResponseToJSON(q.resp.Bytes())
	if cerr != nil {
		return nil, status.Error(codes.Internal, cerr.Error())
	}
	return js, nil
}

// AttachBodies sets the body transcoders of t's routes, built by build for
// each route of l (config order) that declares a body; build returning
// nil leaves the route as it is. Call before t serves.
func (t *Table) AttachBodies(l *config.Listener, build func(i int, b *config.Body) (*transcode.Codec, error)) error {
	seen := map[uint32]int{}
	for i, rc := range l.Routes {
		n := seen[rc.Cmd]
		seen[rc.Cmd] = n + 1
		if rc.Body == nil {
			continue
		}
		bc, err := build(i, rc.Body)
		if err != nil {
			return err
		}
		if rs := t.byCmd[rc.Cmd]; n < len(rs) {
			rs[n].Body = bc
		}
	}
	return nil
}
