package outbound

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
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
