package outbound

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/stream"
)

// callStream bridges a gRPC stream call to a stream exchange on a private
// upstream (docs/protocol.md "Push and streams"): each request message
// becomes a request frame with MORE (a server-stream route sends its one
// message as the only, final request frame; client and bidi routes end the
// request side with an empty frame); each reply frame with MORE becomes a
// response message and the final frame the call's status. A gRPC cancel or
// deadline sends CANCEL. The exchange's receive buffer is bounded: a
// client that does not read its responses ends the call with
// RESOURCE_EXHAUSTED (result 6) without stalling the other exchanges on
// the same upstream connection.
func (s *Server) callStream(r *Route, ss grpc.ServerStream) error {
	ctx := ss.Context()
	var ext [maxExt]codec.Ext
	f := codec.Frame{Cmd: r.Cmd, Ext: ext[:0]}
	var dlb [4]byte
	ctx, cancel, err := r.requestFrame(ctx, &f, &dlb)
	defer cancel()
	if err != nil {
		return err
	}
	st, err := r.Pool.OpenStream(r.Cmd, f.UIN, f.Ext, stream.Limits{})
	if err != nil {
		return s.poolError(ctx, r, err)
	}
	defer st.Cancel() // CANCEL to the peer unless the exchange ended

	// Requests: a goroutine forwards the client's messages; the handler
	// returning (status sent) ends its RecvMsg. It reads the transport's
	// stream, not the limiter's pooled wrapper, which is recycled when the
	// handler returns (the first-message receive timeout is for unary
	// routes: a stream's client may rightly wait before sending).
	rs := ss
	if ls, ok := ss.(*limitedStream); ok {
		rs = ls.ServerStream
	}
	go func() {
		sent := false
		for {
			var b []byte
			err := rs.RecvMsg(&b)
			switch {
			case errors.Is(err, io.EOF):
				if r.Stream == config.StreamServer && sent {
					return // the one request already went out as the last frame
				}
				_ = st.CloseSend()
				return
			case err != nil:
				st.Cancel()
				return
			case r.Stream == config.StreamServer:
				if sent {
					st.Cancel() // a second request on a server-stream route
					return
				}
				sent = true
				if st.Send(b, true) != nil {
					return
				}
			default:
				if st.Send(b, false) != nil {
					return
				}
			}
		}
	}()

	headerSent := false
	for {
		b, err := st.Recv(ctx)
		switch {
		case err == nil:
			if !headerSent {
				streamReplyMD(r, ss, st.TakeExt(), false)
				headerSent = true
			}
			if err := ss.SendMsg(&b); err != nil {
				return err
			}
		case errors.Is(err, io.EOF):
			streamReplyMD(r, ss, st.TakeExt(), headerSent)
			return nil
		case ctx.Err() != nil:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return status.Error(codes.DeadlineExceeded, "outbound: stream deadline exceeded")
			}
			return status.Error(codes.Canceled, "outbound: stream canceled")
		default:
			var ee *stream.EndError
			if !errors.As(err, &ee) {
				return status.Errorf(codes.Internal, "outbound: stream: %v", err)
			}
			streamReplyMD(r, ss, st.TakeExt(), headerSent)
			e := [1]codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte(ee.Msg)}}
			trl, serr := mapping.ReplyStatus(&codec.Frame{Result: ee.Result, Ext: e[:]})
			if trl != nil {
				ss.SetTrailer(trl)
			}
			return serr
		}
	}
}

// streamReplyMD sets the application extensions of a stream's reply frames
// as response metadata, as for a unary reply (x-mgp-ext-<k>-bin, configured
// pairs under their keys, pairs marked trailer as trailers): in the header
// while it is not sent yet, else in the trailer.
func streamReplyMD(r *Route, ss grpc.ServerStream, ext []codec.Ext, headerSent bool) {
	if len(ext) == 0 {
		return
	}
	f := codec.Frame{Ext: ext}
	hdr, trl := r.md.ReplyToMD(&f, mapping.ReplyHeader(&f))
	if len(hdr) > 0 && (headerSent || ss.SetHeader(hdr) != nil) {
		ss.SetTrailer(hdr)
	}
	if len(trl) > 0 {
		ss.SetTrailer(trl)
	}
}

// proxyStreamDesc lets a proxied stream carry any number of messages each
// way.
var proxyStreamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// proxyStream is the gRPC → gRPC path of a stream route: the call's
// messages go to the route's gRPC upstream as raw bytes on a stream call
// (called method or rewrite_method), the upstream's messages come back,
// then its header, trailer and status unchanged (hop-by-hop keys dropped,
// as for unary proxying). Cancelling the call cancels the upstream's.
func (s *Server) proxyStream(r *Route, method string, ss grpc.ServerStream) error {
	ctx, cancelDeadline := proxyContext(ss.Context(), r.Timeout)
	defer cancelDeadline()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.CallMethod != "" {
		method = r.CallMethod
	}
	cs, err := r.GRPC.NewStream(ctx, proxyStreamDesc, method, grpc.ForceCodecV2(rawcodec.Codec{}))
	if err != nil {
		return err
	}
	rs := ss
	if ls, ok := ss.(*limitedStream); ok {
		rs = ls.ServerStream // see callStream
	}
	go func() {
		for {
			var b []byte
			err := rs.RecvMsg(&b)
			switch {
			case errors.Is(err, io.EOF):
				_ = cs.CloseSend()
				return
			case err != nil:
				cancel()
				return
			}
			if cs.SendMsg(&b) != nil {
				return
			}
		}
	}()
	headerSent := false
	for {
		var b []byte
		err := cs.RecvMsg(&b)
		if !headerSent {
			headerSent = true
			if h, herr := cs.Header(); herr == nil {
				if fh := filterMD(h); len(fh) > 0 {
					if serr := ss.SetHeader(fh); serr != nil {
						return serr
					}
				}
			}
		}
		if err == nil {
			if err := ss.SendMsg(&b); err != nil {
				return err
			}
			continue
		}
		if t := filterMD(cs.Trailer()); len(t) > 0 {
			ss.SetTrailer(t)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		s.log.Debug("grpc upstream stream failed", "method", method, "err", err)
		return err // the upstream's status, unchanged
	}
}
