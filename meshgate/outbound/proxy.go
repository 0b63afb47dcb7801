package outbound

import (
	"bytes"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/shadow"
	"github.com/meshgate/meshgate/meshgate/telemetry"
)

// proxy is the gRPC → gRPC path: the call's one request message is sent
// as raw bytes to the route's gRPC upstream, under the called method or the
// route's rewrite_method; request metadata goes along and the response
// header, trailer, status (code, message, details) and message come back,
// all except hop-by-hop and transport keys (see forwardable). The deadline
// is the call's own, else the route's timeout.
//
// oc (nil when telemetry is off) learns the upstream's address; the
// request's traceparent, replaced by the span's in stream's context, goes
// upstream with the other metadata.
func (s *Server) proxy(r *Route, method string, stream grpc.ServerStream, oc *telemetry.Call) error {
	ctx, cancel := proxyContext(stream.Context(), r.Timeout)
	defer cancel()
	cs := statePool.Get().(*callState)
	defer func() {
		cs.msg.Free()
		statePool.Put(cs)
	}()
	if err := recvOne(stream, &cs.msg, &cs.extra); err != nil {
		return err
	}
	called := method
	if r.CallMethod != "" {
		method = r.CallMethod
	}
	var resp rawcodec.Message
	defer resp.Free()
	var hdr, trl metadata.MD
	var mirrored []byte // the request body for the shadow (Invoke takes cs.msg's buffer)
	want := r.mig != nil && r.mig.Mirror.Want(false)
	if want {
		mirrored = bytes.Clone(cs.msg.Bytes())
	}
	err := r.GRPC.Invoke(ctx, method, &cs.msg, &resp, oc.CallOptions([]grpc.CallOption{grpc.Header(&hdr), grpc.Trailer(&trl)})...)
	if want {
		req := shadowRequest(ctx, called, mirrored, nil, false)
		primary := shadow.FromGRPC(resp.Bytes(), err, hdr, trl)
		r.mig.Mirror.Submit(&req, &primary)
	}
	if h := filterMD(hdr); len(h) > 0 {
		if serr := stream.SetHeader(h); serr != nil && err == nil {
			return serr
		}
	}
	if t := filterMD(trl); len(t) > 0 {
		stream.SetTrailer(t)
	}
	if err != nil {
		s.log.Debug("grpc upstream call failed", "method", method, "err", err)
		return err // the upstream's status, unchanged
	}
	return stream.SendMsg(&resp)
}

// filterMD returns md without hop-by-hop and transport keys: pseudo
// headers, connection-level HTTP headers, content-type, user-agent, te, the
// grpc-* transport keys (grpc-timeout travels as the context deadline) and
// x-mgp-key-id (set only by a private listener that verified a key; never
// trusted from a gRPC caller).
func filterMD(md metadata.MD) metadata.MD {
	if len(md) == 0 {
		return nil
	}
	out := make(metadata.MD, len(md))
	for k, v := range md {
		if !forwardable(k) {
			continue
		}
		out[k] = v
	}
	return out
}

func forwardable(k string) bool {
	switch k {
	case "content-type", "user-agent", "te", "connection", "keep-alive", "proxy-connection",
		"transfer-encoding", "upgrade", "host", mapping.MDKeyID:
		return false
	}
	if strings.HasPrefix(k, ":") {
		return false
	}
	// grpc-status, grpc-message, grpc-timeout, grpc-encoding... belong to
	// the transport; grpc-status-details-bin travels inside the status.
	return !strings.HasPrefix(k, "grpc-")
}
