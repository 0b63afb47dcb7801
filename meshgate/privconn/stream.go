package privconn

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/stream"
)

// ErrStreamDone: a message was sent on a stream after its last one, or
// after it ended.
var ErrStreamDone = errors.New("privconn: stream already ended")

// Stream is one stream exchange (docs/protocol.md "Push and streams") on a
// Conn: request frames with MORE, reply frames with MORE, one final reply
// with the result. The connection's reader queues reply messages in the
// exchange's bounded buffer without waiting for the consumer; past the
// bound the exchange ends with result 6 and a CANCEL frame goes to the peer,
// so one slow consumer never stalls the other exchanges of the connection.
type Stream struct {
	cn  *Conn
	seq uint32
	cmd uint32
	uin uint64
	ex  *stream.Exchange

	mu     sync.Mutex
	ext    []codec.Ext // sent with the first frame only
	sent   bool        // the last request frame went out
	closed bool        // forgotten by the connection
	onEnd  func()      // see OnEnd
}

// OnEnd sets fn to run once when the stream is done with (its end was
// received, or Cancel); call it right after OpenStream, before Recv or
// Cancel.
func (s *Stream) OnEnd(fn func()) { s.onEnd = fn }

// TakeExt returns the application extensions of the reply frames received
// since the last call (at most stream.MaxExt): with the first message, the
// peer's response header; with the end, its trailer.
func (s *Stream) TakeExt() []codec.Ext { return s.ex.TakeExt() }

// OpenStream starts an exchange of cmd for uin; ext (e.g. the deadline and
// trace extensions) goes with the first request frame. The stream counts as
// one request in flight until it ends.
func (cn *Conn) OpenStream(cmd uint32, uin uint64, ext []codec.Ext, lim stream.Limits) (*Stream, error) {
	if cn.inflight.Add(1) > int64(cn.opts.MaxInFlight) {
		cn.inflight.Add(-1)
		return nil, ErrTooManyInFlight
	}
	s := &Stream{cn: cn, cmd: cmd, uin: uin, ex: stream.New(lim), ext: ext}
	cn.mu.Lock()
	if cn.closed {
		err := cn.err
		cn.mu.Unlock()
		cn.inflight.Add(-1)
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	if cn.streams == nil {
		cn.streams = make(map[uint32]*Stream)
	}
	for {
		q := cn.seq.Add(1)
		_, busy := cn.pending[q]
		if _, sbusy := cn.streams[q]; busy || sbusy {
			continue
		}
		s.seq = q
		cn.streams[q] = s
		break
	}
	cn.mu.Unlock()
	return s, nil
}

// Seq is the exchange's sequence number on the connection.
func (s *Stream) Seq() uint32 { return s.seq }

// Send sends one request message: with MORE set, or as the last request
// frame (MORE clear) when last. A server-stream exchange sends its one
// request with last; a client or bidi stream sends messages and then
// CloseSend. Send blocks while the socket is busy (backpressure).
func (s *Stream) Send(body []byte, last bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent {
		return ErrStreamDone
	}
	if ended, _ := s.ex.Ended(); ended {
		return ErrStreamDone
	}
	f := codec.Frame{Cmd: s.cmd, Seq: s.seq, UIN: s.uin, Body: body, Ext: s.ext}
	if !last {
		f.Flags = codec.FlagMore
	}
	s.ext = nil
	if err := s.cn.write(&f); err != nil {
		return err
	}
	s.sent = last
	return nil
}

// CloseSend ends the request side with an empty last frame.
func (s *Stream) CloseSend() error { return s.Send(nil, true) }

// Recv returns the next reply message; io.EOF after the final reply with
// result 0; a *stream.EndError for any other result (6 when this side's
// buffer overflowed, 7 when the connection closed). It waits for ctx too.
func (s *Stream) Recv(ctx context.Context) ([]byte, error) {
	b, err := s.ex.Recv(ctx)
	if err != nil && ctx.Err() == nil {
		s.forget()
	}
	return b, err
}

// Cancel gives the exchange up: a CANCEL frame tells the peer (unless the
// exchange already ended) and Recv returns result 11.
func (s *Stream) Cancel() {
	if s.ex.Cancel() {
		s.mu.Lock()
		f := codec.Frame{Cmd: s.cmd, Seq: s.seq, UIN: s.uin, Flags: codec.FlagCancel}
		_ = s.cn.write(&f)
		s.mu.Unlock()
	}
	s.forget()
}

// forget removes the stream from the connection once.
func (s *Stream) forget() {
	cn := s.cn
	cn.mu.Lock()
	if s.closed {
		cn.mu.Unlock()
		return
	}
	s.closed = true
	if cn.streams[s.seq] == s {
		delete(cn.streams, s.seq)
	}
	cn.mu.Unlock()
	cn.inflight.Add(-1)
	if s.onEnd != nil {
		s.onEnd()
	}
}

// write sends f, failing the connection on a socket error.
func (cn *Conn) write(f *codec.Frame) error {
	if err := cn.w.WriteFrame(f); err != nil {
		if errors.Is(err, codec.ErrInvalidFrame) || errors.Is(err, ErrWriteBacklog) {
			return err
		}
		err = fmt.Errorf("%w: write: %w", ErrClosed, err)
		cn.fail(err)
		return err
	}
	cn.sent.Add(1)
	return nil
}

// dispatchStream hands reply frame f to its stream, if one has f.Seq. It
// runs on the reader goroutine and never waits for the consumer.
func (cn *Conn) dispatchStream(f *codec.Frame) bool {
	cn.mu.Lock()
	s := cn.streams[f.Seq]
	cn.mu.Unlock()
	if s == nil {
		return false
	}
	s.ex.AddExt(f.Ext) // the reply's header/trailer extensions, seen with this message or the end
	switch {
	case f.Flags&codec.FlagMore != 0:
		if s.ex.Offer(f.Body) != nil {
			// Over this exchange's bound: it ended with result 6; tell
			// the peer to stop.
			s.mu.Lock()
			c := codec.Frame{Cmd: s.cmd, Seq: s.seq, UIN: s.uin, Flags: codec.FlagCancel}
			_ = cn.write(&c)
			s.mu.Unlock()
		}
	default:
		if len(f.Body) > 0 && f.Result == codec.ResultOK {
			_ = s.ex.Offer(f.Body)
		}
		msg, _ := f.ExtValue(codec.ExtErrorMsg)
		s.ex.Finish(f.Result, string(msg))
	}
	return true
}

// failStreams ends every stream with result 7 (the connection closed).
func (cn *Conn) failStreams(streams map[uint32]*Stream, err error) {
	for _, s := range streams {
		s.ex.Finish(codec.ResultUnavailable, err.Error())
	}
}
