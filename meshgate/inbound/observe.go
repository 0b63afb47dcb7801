package inbound

import (
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/telemetry"
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

// mapMetadata applies the table's configured extension ⇄ metadata pairs to
// q's request metadata and remembers them for the reply.
func (q *request) mapMetadata(t *Table, f *codec.Frame) {
	q.mm = t.MD
	q.mm.RequestToMD(f, q.md.MD)
}
