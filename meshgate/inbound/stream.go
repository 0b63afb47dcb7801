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
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/stream"
	"github.com/meshgate/meshgate/meshgate/upstream"
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

// frameStreamer opens stream exchanges on a private upstream (an
// upstream.PrivatePool).
type frameStreamer interface {
	OpenStream(cmd uint32, uin uint64, ext []codec.Ext, lim stream.Limits) (*privconn.Stream, error)
}

// startStream opens an exchange for the first frame f of a stream route r
// (r's upstream is acquired) and runs the call — a gRPC stream, or a
// stream exchange on a private upstream — in its own goroutine.
//
// mm (the table's extension ⇄ metadata pairs) maps request extensions to
// metadata keys and reply metadata back, for gRPC upstreams.
func (c *conn) startStream(r *Route, f *codec.Frame, keyID uint32, authed bool, mm *mapping.MDMap, adm *resilience.Admission) {
	s := c.s
	var up streamer
	var fup frameStreamer
	ok := false
	if r.Private != nil {
		fup, ok = r.Private.(frameStreamer)
	} else {
		up, ok = r.Upstream.(streamer)
	}
	if !ok {
		r.release()
		adm.Release()
		c.replyError(f, codec.ResultInternal, "upstream cannot stream")
		return
	}
	if c.streams == nil {
		c.streams = stream.NewTable(streamExchanges, stream.Limits{Messages: config.DefaultStreamBuffer})
	}
	ex, ok := c.streams.Open(f.Seq)
	if !ok {
		r.release()
		adm.Release()
		s.rejected("stream_limit")
		c.replyError(f, codec.ResultOverloaded, "too many streams in flight on this connection")
		return
	}
	timeout := r.Timeout
	var md *mapping.RequestMD
	var ext []codec.Ext
	if fup != nil {
		if d, ok := mapping.Timeout(f); ok {
			timeout = d
		}
		ext = passExt(f)
	} else {
		md = mapping.NewRequestMD()
		if d, ok := md.FromFrame(f, keyID, authed); ok {
			timeout = d
		}
		mm.RequestToMD(f, md.MD)
	}
	c.streams.Dispatch(f) // the first message (or the only, final one)
	c.sem <- struct{}{}
	c.inflight.Add(1)
	if s.mInFlight != nil {
		s.mInFlight.Inc()
	}
	c.calls.Add(1)
	cmd, seq, uin := f.Cmd, f.Seq, f.UIN // f aliases the read buffer
	if fup != nil {
		go c.runStream(r, adm, ex, cmd, seq, uin, nil, timeout, func(ctx context.Context, cancel context.CancelFunc) error {
			return c.proxyStream(ctx, cancel, r, fup, ex, cmd, seq, uin, ext)
		})
		return
	}
	go c.runStream(r, adm, ex, cmd, seq, uin, md.MD, timeout, func(ctx context.Context, cancel context.CancelFunc) error {
		return c.bridgeStream(ctx, cancel, r, up, mm, ex, cmd, seq, uin)
	})
}

// passExt copies f's extensions for a private upstream (they alias the
// read buffer): every one except ext 2 (auth, verified here) and ext 3
// (deadline, re-sent with the remaining time).
func passExt(f *codec.Frame) []codec.Ext {
	var out []codec.Ext
	for _, e := range f.Ext {
		if e.Key == codec.ExtAuth || e.Key == codec.ExtDeadline {
			continue
		}
		out = append(out, codec.Ext{Key: e.Key, Value: append([]byte(nil), e.Value...)})
	}
	return out
}

func (c *conn) runStream(r *Route, adm *resilience.Admission, ex *stream.Exchange, cmd, seq uint32, uin uint64, md metadata.MD, timeout time.Duration, call func(context.Context, context.CancelFunc) error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(c.ctx, md), timeout)
	err := call(ctx, cancel)
	cancel()
	c.streams.Close(seq)
	r.release()
	adm.Release()
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
func (c *conn) bridgeStream(ctx context.Context, cancel context.CancelFunc, r *Route, up streamer, mm *mapping.MDMap, ex *stream.Exchange, cmd, seq uint32, uin uint64) error {
	var header, trailer metadata.MD
	cs, err := up.NewStream(ctx, streamDesc, r.Method, grpc.ForceCodecV2(rawcodec.Codec{}), grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		ex.Cancel()
		c.endStream(cmd, seq, uin, err, nil, nil, nil)
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
	headerSent := false
	for {
		var b []byte
		err := cs.RecvMsg(&b)
		if err == nil {
			out := codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagResponse | codec.FlagMore, Body: b}
			if !headerSent {
				// The first reply frame carries the response header's
				// extensions (the final one the trailer's).
				headerSent = true
				if h, herr := cs.Header(); herr == nil && len(h) > 0 {
					mapping.ReplyFrame(&out, b, nil, h, nil)
					mm.ReplyFromMD(&out, h, nil)
				}
			}
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
		if headerSent {
			header = nil // went with the first reply frame
		}
		c.endStream(cmd, seq, uin, err, header, trailer, mm)
		return err
	}
}

// endStream writes the exchange's final frame: MORE clear, the status as
// result and ext 5, an empty body.
func (c *conn) endStream(cmd, seq uint32, uin uint64, err error, header, trailer metadata.MD, mm *mapping.MDMap) {
	var ext [4]codec.Ext
	out := codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagResponse, Ext: ext[:0]}
	mapping.ReplyFrame(&out, nil, err, header, trailer)
	mm.ReplyFromMD(&out, header, trailer)
	c.reply(&out)
}

// proxyStream passes an exchange through to a private upstream (private →
// private): each message of the client's exchange goes out as a frame of
// an exchange the pool opens with its own seq (cmd rewritten when the route
// says so), each reply message comes back with the client's seq, and the
// final frame's result and message pass unchanged, and so do the reply
// frames' application extensions. A CANCEL from the client, an overflow or
// the deadline sends CANCEL upstream.
func (c *conn) proxyStream(ctx context.Context, cancel context.CancelFunc, r *Route, up frameStreamer, ex *stream.Exchange, cmd, seq uint32, uin uint64, ext []codec.Ext) error {
	sendCmd := cmd
	if r.SendCmd != 0 {
		sendCmd = r.SendCmd
	}
	var dl [4]byte
	f := codec.Frame{Ext: ext}
	if d, ok := ctx.Deadline(); ok {
		mapping.AppendDeadline(&f, &dl, time.Until(d))
	}
	st, err := up.OpenStream(sendCmd, uin, f.Ext, stream.Limits{Messages: config.DefaultStreamBuffer})
	if err != nil {
		ex.Cancel()
		err = upstream.Status(ctx, err)
		c.endStream(cmd, seq, uin, err, nil, nil, nil)
		return err
	}
	defer st.Cancel()
	go func() {
		select {
		case <-ex.Gone():
			st.Cancel()
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		sent := false
		for {
			b, err := ex.Recv(ctx)
			switch {
			case err == nil:
				last := r.Stream == config.StreamServer
				if st.Send(b, last) != nil {
					return
				}
				sent = sent || last
			case errors.Is(err, io.EOF):
				if !sent {
					_ = st.CloseSend()
				}
				return
			default:
				return
			}
		}
	}()
	for {
		b, err := st.Recv(ctx)
		switch {
		case err == nil:
			// Reply extensions (the peer's header, then trailer) pass as
			// they came.
			out := codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagResponse | codec.FlagMore, Body: b, Ext: st.TakeExt()}
			c.reply(&out)
			continue
		case errors.Is(err, io.EOF):
			c.reply(&codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagResponse, Ext: st.TakeExt()})
			return nil
		}
		var ee *stream.EndError
		if local := ex.Err(); local != nil && errors.As(local, &ee) {
			// the client cancelled, or its exchange overflowed
		} else if !errors.As(err, &ee) {
			st.Cancel()
			err = upstream.Status(ctx, err)
			c.endStream(cmd, seq, uin, err, nil, nil, nil)
			return err
		}
		ex.Cancel()
		e := append([]codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte(ee.Msg)}}, st.TakeExt()...)
		c.reply(&codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagResponse, Result: ee.Result, Ext: e})
		return resultError(ee.Result)
	}
}
