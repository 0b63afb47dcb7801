package outbound

import (
	"fmt"

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
	if r.body == nil {
		return nil
	}
	js, err := r.body.RequestToJSON(f.Body)
	if err != nil {
		return status.Error(codes.InvalidArgument, "outbound: "+err.Error())
	}
	f.Body = js
	return nil
}

// transcodeReply converts a JSON reply body to protobuf; a reply that does
// not parse is the upstream's fault (INTERNAL).
func transcodeReply(r *Route, resp *codec.Frame) error {
	if r.body == nil {
		return nil
	}
	pb, err := r.body.ResponseToProto(resp.Body)
	if err != nil {
		return status.Error(codes.Internal, "outbound: upstream reply: "+err.Error())
	}
	resp.Body = pb
	return nil
}
