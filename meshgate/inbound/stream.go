package inbound

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/stream"
)

// Streams (routes[].stream; docs/protocol.md "Push and streams"): the
// first request frame of a stream route opens an exchange and a gRPC stream
// call; the exchange's later request frames (same seq) are queued in its
// bounded buffer by the read goroutine, which never waits for the upstream;
// each response message goes back as a reply frame with MORE, the call's
// status as the final frame. CANCEL from the client cancels the call
// (final result 11); a full buffer ends the exchange with result 6; the
// connection keeps serving.

// streamExchanges bounds the open exchanges per connection.
const streamExchanges = 256

// streamKind normalises routes[].stream ("unary" is "").
func streamKind(s string) string {
	if s == "unary" {
		return config.StreamUnary
	}
	return s
}

// streamer opens gRPC stream calls (a grpcpool.Pool).
type streamer interface {
	NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error)
}

var streamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// streamFrame hands a frame of an exchange in flight to it and swallows a
// CANCEL for an unknown exchange; false means f starts something new.
func (c *conn) streamFrame(f *codec.Frame) bool {
	if c.streams != nil && c.streams.Dispatch(f) != stream.NotStream {
		return true
	}
	return f.Flags&codec.FlagCancel != 0
}

// startStream opens an exchange for the first frame f of a stream route r
// (r's upstream is acquired) and runs the gRPC call in its own goroutine.
func (c *conn) startStream(r *Route, f *codec.Frame, keyID uint32, authed bool) {
	s := c.s
	up, ok := r.Upstream.(streamer)
	if !ok {
		r.Upstream.Release()
		c.replyError(f, codec.ResultInternal, "upstream cannot stream")
		return
	}
	if c.streams == nil {
		c.streams = stream.NewTable(streamExchanges, stream.Limits{Messages: config.DefaultStreamBuffer})
	}
	ex, ok := c.streams.Open(f.Seq)
	if !ok {
		r.Upstream.Release()
		s.rejected("stream_limit")
		c.replyError(f, codec.ResultOverloaded, "too many streams in flight on this connection")
		return
	}
	md := mapping.NewRequestMD()
	timeout := r.Timeout
	if d, ok := md.FromFrame(f, keyID, authed); ok {
		timeout = d
	}
	c.streams.Dispatch(f) // the first message (or the only, final one)
	c.sem <- struct{}{}
	c.inflight.Add(1)
	if s.mInFlight != nil {
		s.mInFlight.Inc()
	}
	c.calls.Add(1)
	go c.runStream(r, up, ex, f.Cmd, f.Seq, f.UIN, md.MD, timeout)
}

func (c *conn) runStream(r *Route, up streamer, ex *stream.Exchange, cmd, seq uint32, uin uint64, md metadata.MD, timeout time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(c.ctx, md), timeout)
	err := c.bridgeStream(ctx, cancel, r, up, ex, cmd, seq, uin)
	cancel()
	c.streams.Close(seq)
	r.Upstream.Release()
	c.s.observe(r, err, time.Since(start))
	<-c.sem
	if c.inflight.Add(-1) == 0 && c.s.draining.Load() {
		c.drainNudge()
	}
	if c.s.mInFlight != nil {
		c.s.mInFlight.Dec()
	}
	c.calls.Done()
}

// bridgeStream runs one exchange ⇄ gRPC stream and writes the reply
// frames; it returns the call's status error (nil: OK).
func (c *conn) bridgeStream(ctx context.Context, cancel context.CancelFunc, r *Route, up streamer, ex *stream.Exchange, cmd, seq uint32, uin uint64) error {
	var header, trailer metadata.MD
	cs, err := up.NewStream(ctx, streamDesc, r.Method, grpc.ForceCodecV2(rawcodec.Codec{}), grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		ex.Cancel()
		c.endStream(cmd, seq, uin, err, nil, nil)
		return err
	}
	// Requests: the exchange's messages to the call. A local end of the
	// exchange (CANCEL from the client: 11, buffer full: 6) cancels the call.
	var local atomic.Pointer[stream.EndError]
	go func() {
		// A CANCEL from the client (even after the request side ended, a
		// server stream) or a full buffer (even while SendMsg waits for
		// the upstream's flow control) cancels the call at once.
		select {
		case <-ex.Gone():
			var ee *stream.EndError
			if errors.As(ex.Err(), &ee) {
				local.Store(ee)
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		for {
			b, err := ex.Recv(ctx)
			switch {
			case err == nil:
				if cs.SendMsg(&b) != nil {
					return // the call ended; RecvMsg below reports why
				}
			case errors.Is(err, io.EOF):
				_ = cs.CloseSend()
				return
			default:
				var ee *stream.EndError
				if errors.As(err, &ee) {
					local.Store(ee)
				}
				cancel()
				return
			}
		}
	}()
	for {
		var b []byte
		err := cs.RecvMsg(&b)
		if err == nil {
			out := codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagResponse | codec.FlagMore, Body: b}
			c.reply(&out)
			continue
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		if ee := local.Load(); ee != nil {
			code, _ := codec.GRPCCode(ee.Result)
			err = status.Error(codes.Code(code), ee.Msg)
		}
		ex.Cancel() // stop queueing requests nobody will send
		c.endStream(cmd, seq, uin, err, header, trailer)
		return err
	}
}

// endStream writes the exchange's final frame: MORE clear, the status as
// result and ext 5, an empty body.
func (c *conn) endStream(cmd, seq uint32, uin uint64, err error, header, trailer metadata.MD) {
	var ext [4]codec.Ext
	out := codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagResponse, Ext: ext[:0]}
	mapping.ReplyFrame(&out, nil, err, header, trailer)
	c.reply(&out)
}
