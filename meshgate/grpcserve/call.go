package grpcserve

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/connio"
)

// Call is one unary call. The reading goroutine fills it and hands it to
// the Handler; from then on the handler owns it until Finish. It
// implements grpc.ServerTransportStream (Method, SetHeader, SendHeader,
// SetTrailer), and its Context carries it, so grpc.MethodFromServerStream,
// grpc.SetHeader and grpc.SetTrailer work as on a grpc-go server.
type Call struct {
	c      *conn
	id     uint32
	method string
	md     metadata.MD
	dl     time.Time // zero: no grpc-timeout
	enc    string    // grpc-encoding ("" = identity)
	ct     string    // the reply's content-type ("": application/grpc)
	ctx    context.Context
	cancel context.CancelFunc

	// request, reading goroutine only until dispatch
	opened    time.Time
	msgLen    int    // -1 until the 5-byte prefix is in
	extra     bool   // bytes past the first message
	recvUsed  int64  // stream receive window used
	unacked   uint32 // stream window consumed, not yet granted back
	endStream bool
	answered  bool    // an early status was written: ignore the rest
	started   bool    // handed to the handler (under conn.mu)
	handled   bool    // the handler answered (under conn.mu)
	orphan    bool    // reset while the handler runs: counted in conn.orphans (under conn.mu)
	npfx      uint8   // bytes of pfx received
	pfx       [5]byte // the message's 5-byte prefix (flag, length)

	// request message, for the handler
	msg     *[]byte // pooled (mem.DefaultBufferPool), or &small; nil: no message
	small   []byte  // a message below mem's pooling threshold
	hasMsg  bool
	msgTook bool

	d *delegated // delegated to Config.Fallback (delegate.go); nil: the fast path

	finished atomic.Bool
	reset    atomic.Bool  // the client reset the stream, or the conn closed
	hook     func()       // OnCancel's
	hookSt   atomic.Int32 // hookNone, hookArmed, hookDone
	rec      callRecord   // grpc-go's server metrics (metrics.go)

	// response, handler-owned until Finish; then under conn.wmu
	hmu     sync.Mutex
	header  metadata.MD
	trailer metadata.MD
	out     []byte  // 5-byte prefix + message; nil: no message
	outP    *[]byte // out's pooled buffer (mem.DefaultBufferPool), nil: not pooled
	hasOut  bool
	st      *status.Status
	sent    int       // bytes of out written
	sendWin int64     // under conn.wmu
	hdrSent bool      // under conn.wmu
	stall   time.Time // under conn.wmu: when the queued reply (conn.pending) last made progress
}

// Context is the call's context: the incoming metadata, the peer, the
// deadline from grpc-timeout, and the Call as the server transport
// stream. It is cancelled when the client resets the stream, the
// connection closes, or the call is finished.
func (cl *Call) Context() context.Context { return cl.ctx }

// Cancel hook states.
const (
	hookNone  = iota // no hook; the call not cancelled
	hookArmed        // OnCancel set one
	hookDone         // cancelled (the hook started, if armed), or the hook stopped
)

// OnCancel arranges for f to run on a goroutine of its own when the
// call is cancelled because the client reset its stream or the
// connection ended: what context.AfterFunc(Context(), f) does for those
// causes (not for the deadline, nor the cancellation at Finish), without
// its allocations. It returns false, and f never runs, when the call was
// cancelled so already. One hook per call.
func (cl *Call) OnCancel(f func()) bool {
	cl.hook = f
	return cl.hookSt.CompareAndSwap(hookNone, hookArmed)
}

// StopOnCancel disarms OnCancel's hook: true if it had not started and
// now never will.
func (cl *Call) StopOnCancel() bool { return cl.hookSt.CompareAndSwap(hookArmed, hookDone) }

// cancelled runs the OnCancel hook after the client's reset or the
// connection's end cancelled the call's context.
func (cl *Call) cancelled() {
	if cl.hookSt.Swap(hookDone) == hookArmed {
		go cl.hook()
	}
}

// replyCT is the reply's content-type.
func (cl *Call) replyCT() string {
	if cl.ct == "" {
		return "application/grpc"
	}
	return cl.ct
}

// Method is the called method ("/pkg.Svc/Method").
func (cl *Call) Method() string { return cl.method }

// Metadata is the request metadata (also in the context).
func (cl *Call) Metadata() metadata.MD { return cl.md }

// Message returns the request message: ok false when the client sent
// none; more reports bytes after the first message (a second message).
// The slice is valid until Finish unless TakeMessage took it.
func (cl *Call) Message() (b []byte, ok, more bool) {
	cl.rec.read = true
	if !cl.hasMsg {
		return nil, false, cl.extra
	}
	if cl.msg == nil {
		return []byte{}, true, cl.extra
	}
	return *cl.msg, true, cl.extra
}

// TakeMessage hands the request message's pooled buffer to the caller as
// a mem.Buffer (free it when done); nil when there is none.
func (cl *Call) TakeMessage() mem.Buffer {
	if !cl.hasMsg || cl.msg == nil || cl.msgTook {
		return nil
	}
	cl.msgTook = true
	return mem.NewBuffer(cl.msg, mem.DefaultBufferPool())
}

// SetHeader adds response header metadata (sent with the reply).
func (cl *Call) SetHeader(md metadata.MD) error { return cl.join(&cl.header, md) }

// SendHeader adds md to the header. The header leaves with the reply
// (one write per call); a unary client sees no difference.
func (cl *Call) SendHeader(md metadata.MD) error { return cl.SetHeader(md) }

// SetTrailer adds response trailer metadata.
func (cl *Call) SetTrailer(md metadata.MD) error { return cl.join(&cl.trailer, md) }

// join adds md to the call's header or trailer (dst), until Finish.
func (cl *Call) join(dst *metadata.MD, md metadata.MD) error {
	if len(md) == 0 {
		return nil
	}
	cl.hmu.Lock()
	defer cl.hmu.Unlock()
	if cl.finished.Load() {
		return errFinished
	}
	*dst = metadata.Join(*dst, md)
	return nil
}

var errFinished = status.Error(codes.Internal, "grpcserve: call already finished")

// SendMsg sets the response message (copied: b may be reused after it
// returns; compressed with the request's grpc-encoding when it has one). A message over the listener's send limit is
// RESOURCE_EXHAUSTED, as grpc-go reports it; a second message is an
// error (unary).
func (cl *Call) SendMsg(b []byte) error {
	if n, lim := len(b), cl.c.s.cfg.MaxSendMsgSize; n > lim {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, lim)
	}
	cl.hmu.Lock()
	defer cl.hmu.Unlock()
	if cl.finished.Load() {
		return errFinished
	}
	if cl.hasOut {
		return status.Error(codes.Internal, "grpcserve: a unary call sends one response message")
	}
	cl.hasOut = true
	if cl.enc != "" && cl.enc != "identity" {
		out, err := compress(cl.enc, b)
		if err != nil {
			return err
		}
		cl.out = out
		return nil
	}
	var p *[]byte
	var out []byte
	if 5+len(b) <= maxPooledOut {
		p = mem.DefaultBufferPool().Get(5 + len(b))
		out = *p
	} else {
		out = make([]byte, 5+len(b))
	}
	n := uint32(len(b))
	out[0], out[1], out[2], out[3], out[4] = 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	copy(out[5:], b)
	cl.out, cl.outP = out, p
	return nil
}

// maxPooledOut bounds the response messages whose buffer comes from
// mem.DefaultBufferPool (power-of-two tiers: a larger message would
// hold up to twice its size while it waits for flow control).
const maxPooledOut = 32 << 10

// dropOut forgets the response message once it is written or will not
// be: its buffer goes back to the pool.
func (cl *Call) dropOut() {
	cl.out = nil
	if p := cl.outP; p != nil {
		cl.outP = nil
		mem.DefaultBufferPool().Put(p)
	}
}

// compress returns b compressed with the request's encoding enc behind a
// 5-byte prefix flagged compressed: the reply uses the request's
// encoding, as grpc-go's server does ("attempt to respond with same
// encoding"); the request was only accepted if enc's compressor is
// installed.
func compress(enc string, b []byte) ([]byte, error) {
	comp := encoding.GetCompressor(enc)
	if comp == nil {
		return nil, status.Errorf(codes.Internal, "grpc: Compressor is not installed for grpc-encoding %q", enc)
	}
	var buf bytes.Buffer
	buf.Grow(5 + len(b)/2)
	buf.Write([]byte{1, 0, 0, 0, 0})
	w, err := comp.Compress(&buf)
	if err == nil {
		if _, err = w.Write(b); err == nil {
			err = w.Close()
		}
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: error while compressing: %v", err)
	}
	out := buf.Bytes()
	n := uint32(len(out) - 5)
	out[1], out[2], out[3], out[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return out, nil
}

// Finish answers the call: the message set by SendMsg (if err is nil)
// and the status of err (nil: OK; a *status.Status error: its code,
// message and details). Only the first Finish counts; a call whose
// stream the client reset writes nothing.
func (cl *Call) Finish(err error) {
	if cl.settle(err) {
		cl.c.finish(cl)
		cl.c.s.cfg.Metrics.finished(cl.ctx, cl)
	}
}

// FinishNoWait is Finish for a goroutine that must not wait on this
// call's client, such as an upstream connection's reader completing the
// call: it writes the answer itself only when that cannot block (nobody
// holds the connection's write lock, the connection is plain TCP, its
// socket's send queue is empty and the answer is small), and leaves it to
// a goroutine of its own otherwise. A client that stops reading thus
// never stalls the goroutine that completes its calls, nor through it
// other clients' calls.
func (cl *Call) FinishNoWait(err error) { cl.FinishNoWaitIn(err, nil) }

// FinishNoWaitIn is FinishNoWait for a connection reader with write batch
// b (nil: none): an answer it would write itself is left to b's flush
// (connio.Batch).
func (cl *Call) FinishNoWaitIn(err error, b *connio.Batch) {
	if cl.settle(err) {
		cl.c.finishNoWait(cl, b)
		cl.c.s.cfg.Metrics.finished(cl.ctx, cl)
	}
}

// Batch is the write batch of the connection's reading goroutine, for a
// call started on it (InlineStarter.TryStart): requests the call sends to
// other connections may be left to it, and are written before the reader
// next reads its socket. Only valid during TryStart.
func (cl *Call) Batch() *connio.Batch { return &cl.c.batch }

// settle records the call's outcome; false if it was already finished.
func (cl *Call) settle(err error) bool {
	if !cl.finished.CompareAndSwap(false, true) {
		return false
	}
	cl.hmu.Lock() // fence with late SetHeader/SetTrailer/SendMsg
	if err != nil {
		cl.st = status.Convert(err)
		cl.dropOut()
		cl.hasOut = false
	}
	cl.rec.note(cl)
	cl.hmu.Unlock()
	cl.freeMsg()
	return true
}

// Peer address, for logs and tests.
func (cl *Call) String() string { return fmt.Sprintf("stream %d %s", cl.id, cl.method) }

func (cl *Call) freeMsg() {
	if cl.msg != nil && !cl.msgTook {
		cl.putMsg()
	}
	cl.msg = nil
}

// putMsg gives the request message's buffer back to the pool, if it
// came from there.
func (cl *Call) putMsg() {
	if cl.msg != &cl.small {
		mem.DefaultBufferPool().Put(cl.msg)
	}
	cl.small = nil
}
