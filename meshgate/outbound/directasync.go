package outbound

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/grpcserve"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// gRPC → private calls completed on the I/O goroutines.
//
// On the direct transport, a call whose route sends to a private upstream
// with one attempt (no retries, no hedging), with no migration (split or
// shadow), not oneway, not switched off, with telemetry off, does not go
// to a worker: the connection's reading goroutine builds the request frame
// as call does (requestFrame: metadata → extensions, deadline → ext 3;
// the one-message check; the body transcoding), authorizes the call, and
// sends it with upstream.PrivatePool.StartPolicy; the upstream
// connection's reader, which receives the reply, maps it (answer: reply
// extensions → header, result → status) and finishes the Call, which
// writes the response. Metrics and the route's in-flight count are as on
// a worker.
//
// The client's RST_STREAM or the connection's end cancels the call's
// context, which cancels the upstream request (its Ticket); the
// completion still runs exactly once. The deadline is StartPolicy's (the
// call's grpc-timeout, else the route's timeout). A request the
// upstream's circuit breaker would queue (resilience.ErrWouldWait) is
// sent with DoPolicy on a goroutine of its own.
//
// Every other call (and any call that fails a condition above) goes to a
// worker's Start (handle), unchanged.

// asyncCall is one call started by TryStart; pooled. refs counts its
// holders (the starter, the completion, the cancel hook): the last one
// puts it back.
type asyncCall struct {
	s      *Server
	r      *Route
	c      *grpcserve.Call
	ds     DirectStream
	cs     *callState
	call   upstream.Call
	ctx    context.Context    // the call's
	cancel context.CancelFunc // noCancel
	dl     time.Time          // the call's deadline, else the route's timeout
	start  time.Time
	refs   atomic.Int32

	doneFn func(resp *codec.Frame, err error)
	hookFn func()
}

var asyncPool sync.Pool

func newAsyncCall() *asyncCall {
	if a, ok := asyncPool.Get().(*asyncCall); ok {
		return a
	}
	a := new(asyncCall)
	a.doneFn, a.hookFn = a.done, a.hook
	return a
}

// asyncRoute reports whether r's calls may complete on the I/O goroutines.
func asyncRoute(r *Route) bool {
	return r.Pool != nil && r.GRPC == nil && r.Stream == "" && !r.Oneway && r.mig == nil &&
		r.Policy.MaxAttempts <= 1 && r.Policy.HedgeDelay <= 0
}

// TryStart starts c on the connection's reading goroutine when its route
// qualifies (see above); false, with nothing done, hands it to a worker.
func (h *directHandler) TryStart(c *grpcserve.Call) bool {
	s := h.s
	if s.tel.Enabled() {
		return false
	}
	method := c.Method()
	if !checkMethod(method) {
		return false
	}
	t := s.table.Load()
	r := t.lookup(method)
	if r == nil || !asyncRoute(r) {
		return false
	}
	if r.switchName != "" && s.sw != nil && s.sw().Get(r.switchName).Off() {
		return false
	}
	if h.wrap != nil {
		ds := directPool.Get().(*DirectStream)
		ds.c, ds.recvd = c, 0
		answered := h.wrap(c, ds)
		ds.c = nil
		directPool.Put(ds)
		if answered {
			return true // answered by the listener (health)
		}
	}
	start := time.Now()
	ctx := c.Context()
	if err := t.authz.authorize(ctx, method); err != nil {
		c.Finish(err)
		return true
	}
	if !r.acquire() {
		return false // retired by a reload: the worker takes the new table
	}
	a := newAsyncCall()
	a.s, a.r, a.c, a.start = s, r, c, start
	a.ds.c, a.ds.recvd = c, 0
	a.cs = statePool.Get().(*callState)
	a.cancel = noCancel
	a.refs.Store(2) // the starter and the completion
	if err := a.send(ctx); err != nil {
		a.finish(err)
		a.unref() // the completion's: it will not run
	}
	a.unref()
	return true
}

// send builds the request frame and starts it; an error is the call's
// answer (the completion has not run).
func (a *asyncCall) send(ctx context.Context) error {
	r, cs := a.r, a.cs
	f := &cs.f
	f.Cmd, f.Ext = r.Cmd, cs.ext[:0]
	a.ctx = ctx
	dl, err := r.requestFrameDirect(ctx, a.c.Metadata(), f, &cs.dl)
	if err != nil {
		return err
	}
	a.dl = dl
	if err := recvOne(&a.ds, &cs.msg, &cs.extra); err != nil {
		return err
	}
	f.Body = cs.msg.Bytes()
	if err := transcodeRequest(r, f); err != nil {
		return err
	}
	a.refs.Add(1) // the cancel hook
	if !a.c.OnCancel(a.hookFn) {
		a.refs.Add(-1) // cancelled already: checked after StartPolicy
	}
	a.call.SetBatch(a.c.Batch()) // on the client connection's reader
	err = r.Pool.StartPolicy(&a.call, f, dl, &r.Policy, a.doneFn)
	switch {
	case errors.Is(err, resilience.ErrWouldWait):
		go a.sync()
	case err != nil:
		a.done(nil, err)
	case errors.Is(a.c.Context().Err(), context.Canceled):
		a.call.Ticket().Cancel() // reset while it was being sent (a stale ticket cancels nothing)
	}
	return nil
}

// hook cancels the upstream request when the client reset the stream or
// the connection ended (grpcserve.Call.OnCancel; not at the deadline:
// StartPolicy answers that).
func (a *asyncCall) hook() {
	if errors.Is(a.c.Context().Err(), context.Canceled) {
		a.call.Ticket().Cancel()
	}
	a.unref()
}

// sync sends the request with DoPolicy (the breaker would queue it).
func (a *asyncCall) sync() {
	ctx, cancel := context.WithDeadline(a.ctx, a.dl)
	resp, err := a.r.Pool.DoPolicy(ctx, &a.cs.f, &a.r.Policy)
	cancel()
	a.done(resp, err)
}

// done is the completion: StartPolicy's callback (resp valid only during
// the call) or sync's.
func (a *asyncCall) done(resp *codec.Frame, err error) {
	if a.c.StopOnCancel() {
		a.unref() // the hook will not run
	}
	a.cs.msg.Free() // the body was encoded onto the wire (or the call failed)
	a.finishIn(a.s.answer(a.ctx, a.r, &a.ds, resp, err), a.call.ReplyBatch())
	a.unref()
}

// finish answers the call with err (nil: the message answer set),
// releases the route and counts the call.
func (a *asyncCall) finish(err error) { a.finishIn(err, nil) }

// finishIn is finish on a connection reader with write batch b (nil:
// none), which the answer's write may be left to.
func (a *asyncCall) finishIn(err error, b *connio.Batch) {
	a.cancel()
	a.r.release()
	a.r.m.Observe(status.Code(err), time.Since(a.start))
	// Often on the upstream connection's reader: it must not wait on this
	// client (a client that stops reading would stall every reply on that
	// upstream connection).
	a.c.FinishNoWaitIn(err, b)
}

func (a *asyncCall) unref() {
	if a.refs.Add(-1) != 0 {
		return
	}
	cs := a.cs
	cs.msg.Free()
	cs.f = codec.Frame{}
	clear(cs.ext[:])
	statePool.Put(cs)
	a.s, a.r, a.c, a.cs, a.ctx, a.cancel, a.dl = nil, nil, nil, nil, nil, nil, time.Time{}
	a.ds = DirectStream{}
	asyncPool.Put(a)
}

var _ grpcserve.InlineStarter = (*directHandler)(nil)
