package grpcdirect

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/connio"
)

// Asynchronous unary calls (Endpoint.Start).
//
// The caller's goroutine encodes and writes the request's HEADERS and DATA
// frames and returns; nobody waits for the reply. The goroutine that reads
// the response's last frame (whoever holds the read role: a synchronous
// caller leading, or the connection's background goroutine, which takes
// the role at once while asynchronous calls are pending and keeps it
// until a synchronous caller asks for it) runs the completion callback.
// There is no timer per call: each connection arms one timer for the
// earliest deadline of its asynchronous calls; at expiry the calls past
// their deadline are reset (RST_STREAM CANCEL) and complete with
// DeadlineExceeded. Ticket.Cancel resets a call and completes it with
// Canceled. A connection that fails or is closed completes every pending
// call with Unavailable; a stream refused by the server (GOAWAY above its
// id, REFUSED_STREAM) is retried once on another connection when one has
// room at once, as the synchronous path retries it.
//
// Every completion is delivered by whoever removes the stream from the
// connection's stream table under its lock (the reader, close, GOAWAY,
// the deadline timer, Cancel), or by the starter when that happened while
// it was still writing the stream: exactly once. A call that cannot be
// written at once (no free stream, a request larger than the send
// windows) is made on Invoke's waiting path on a goroutine of its own.

// Ticket is the handle of a call started by Start.
type Ticket struct {
	c  *conn
	cl *call
	id uint32
}

// Cancel resets the call's stream and completes it with Canceled, unless
// it has completed already (then it does nothing). The zero Ticket does
// nothing.
func (t Ticket) Cancel() {
	if t.c != nil {
		t.c.endAsync(t.cl, t.id, status.Error(codes.Canceled, context.Canceled.Error()))
	}
}

// Start begins a unary call of method with the raw codec, as Invoke makes
// it, without waiting for the answer: ctx gives the outgoing metadata
// (its deadline is not used; a cancelled ctx cancels only a call that
// took the waiting path, below), deadline, when not zero, is the call's
// deadline, sent as grpc-timeout and enforced by the connection's timer.
// done runs exactly once with the error Invoke would return (nil: reply
// holds the response message), on the goroutine that completed the call
// (possibly Start's caller, before Start returns), after the grpc.Header,
// grpc.Trailer and grpc.Peer options are set as Invoke sets them (not for
// a call cancelled, expired or failed by its connection's loss on the
// asynchronous path). The client metrics are recorded as for Invoke.
//
// A call that cannot be written at once (no ready connection with a free
// stream, a request larger than the send windows) takes the waiting path:
// Invoke's, on a goroutine of its own, with ctx and the deadline; its
// Ticket is zero.
func (e *Endpoint) Start(ctx context.Context, method string, deadline time.Time, req, reply any, done func(error), opts ...grpc.CallOption) Ticket {
	return e.start(ctx, method, deadline, req, reply, done, nil, nil, opts)
}

// StartIn is Start for a connection's reading goroutine with write batch
// b: the request's frames are left to b's flush (connio.Batch), and done
// also gets the write batch of the connection reader that completes the
// call (nil on any other completion), which the answer's write may be
// left to.
func (e *Endpoint) StartIn(ctx context.Context, method string, deadline time.Time, req, reply any, b *connio.Batch, done func(error, *connio.Batch), opts ...grpc.CallOption) Ticket {
	return e.start(ctx, method, deadline, req, reply, nil, b, done, opts)
}

func (e *Endpoint) start(ctx context.Context, method string, deadline time.Time, req, reply any, done func(error), b *connio.Batch, doneIn func(error, *connio.Batch), opts []grpc.CallOption) Ticket {
	cl := getCall()
	cl.applyOpts(e, opts)
	cl.async, cl.onDone, cl.reply, cl.actx, cl.method, cl.deadline = true, done, reply, ctx, method, deadline
	cl.batch, cl.onDoneIn = b, doneIn
	if e.cfg.Metrics != nil {
		cl.rec.begin(e.cfg.Metrics, method, cl.static)
		cl.rec.startAttempt(ctx)
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		cl.err = status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
		e.finishAsync(nil, cl, nil)
		return Ticket{}
	}
	if err := cl.marshal(req); err != nil {
		cl.err = err
		e.finishAsync(nil, cl, nil)
		return Ticket{}
	}
	if t, ok := e.startOn(cl, nil); ok {
		return t
	}
	cl.async, cl.batch = false, nil
	go e.startWaiting(cl)
	return Ticket{}
}

// startWaiting makes call cl with Invoke's waiting path, then completes
// it as finishAsync does.
func (e *Endpoint) startWaiting(cl *call) {
	ctx := cl.actx
	if !cl.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, cl.deadline)
		defer cancel()
	}
	err := e.attempts(ctx, cl, cl.method, &cl.rec)
	if err != nil {
		cl.deliverMD()
	} else {
		err = cl.finishReply(cl.reply)
	}
	code := status.Code(err)
	cl.rec.endAttempt(ctx, cl, code)
	cl.rec.endCall(ctx, code)
	cl.callBack(err, nil)
}

// callBack pools cl and runs its callback with err (rb: the completing
// reader's batch, for StartIn's).
func (cl *call) callBack(err error, rb *connio.Batch) {
	done, doneIn := cl.onDone, cl.onDoneIn
	putCall(cl)
	if doneIn != nil {
		doneIn(err, rb)
		return
	}
	done(err)
}

// startOn starts cl on a ready connection other than skip with a free
// stream; false with nothing done when there is none.
func (e *Endpoint) startOn(cl *call, skip *conn) (Ticket, bool) {
	n := uint32(len(e.slots))
	start := e.next.Add(1)
	for i := range n {
		c := e.slots[(start+i)%n].cur.Load()
		if c == nil || c == skip || !c.usable() {
			continue
		}
		if id, ok := c.startAsync(cl); ok {
			return Ticket{c: c, cl: cl, id: id}, true
		}
	}
	return Ticket{}, false
}

// startAsync registers cl as a stream of c and writes it, when c has a
// free stream and the windows take the whole request; false with nothing
// done otherwise. Once registered, a write failure completes it (close).
func (c *conn) startAsync(cl *call) (id uint32, ok bool) {
	c.lockWrite()
	c.mu.Lock()
	if c.err != nil || c.goAway || c.nextID > 1<<31-1 || c.active >= c.maxStreams ||
		int64(cl.total) > min(c.connWin, c.initWin) {
		c.mu.Unlock()
		c.wmu.Unlock()
		return 0, false
	}
	var timeout time.Duration
	if !cl.deadline.IsZero() {
		if timeout = time.Until(cl.deadline); timeout <= 0 {
			c.mu.Unlock()
			c.wmu.Unlock()
			return 0, false
		}
		if c.dlAt.IsZero() || cl.deadline.Before(c.dlAt) {
			c.dlAt = cl.deadline
			if c.dlTimer == nil {
				c.dlTimer = time.AfterFunc(timeout, c.expireAsync)
			} else {
				c.dlTimer.Reset(timeout)
			}
		}
	}
	c.active++
	cl.c = c
	cl.id = c.nextID
	c.nextID += 2
	cl.sendWin = c.initWin
	c.streams[cl.id] = cl
	c.asyncUsed = true
	cl.writing = true
	id = cl.id
	c.needReaderLocked() // someone must read while async calls are pending
	c.mu.Unlock()

	b := cl.batch
	cl.batch = nil // the first attempt's only: a retry runs on a reader
	err := c.writeHeaders(cl.actx, cl, cl.method, timeout)
	if err == nil {
		_, err = c.writeData(cl) // the windows take it all (checked above)
	}
	switch {
	case err == nil && b != nil:
		c.wmu.Unlock()
		b.Defer(c) // written at the batch's flush (FlushBatch)
	case err == nil:
		err = c.unlockWrite()
	default:
		c.wmu.Unlock()
	}
	// cl is no longer used here: a completion that came meanwhile is
	// delivered now.
	c.mu.Lock()
	cl.writing = false
	deferred := cl.deferred
	cl.deferred = false
	c.mu.Unlock()
	if deferred {
		c.deliver(cl, nil)
	}
	if err != nil {
		c.close(fmt.Errorf("write: %w", err)) // completes cl if still open
	}
	return id, true
}

// endAsync removes async call cl (stream id) and completes it with err
// after resetting its stream; nothing if it has completed already.
func (c *conn) endAsync(cl *call, id uint32, err error) {
	c.mu.Lock()
	if c.streams[id] != cl {
		c.mu.Unlock()
		return
	}
	delete(c.streams, id)
	cl.abandoned = true // the reader may still hold it: not pooled again
	cl.err = err
	c.releaseLocked()
	c.mu.Unlock()
	_ = c.writeControl(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
	c.deliver(cl, nil)
	c.closeIfDrained()
}

// expireAsync is the connection's deadline timer: it ends the async calls
// past their deadline and re-arms itself for the earliest remaining one.
func (c *conn) expireAsync() {
	now := time.Now()
	type exp struct {
		cl *call
		id uint32
	}
	var ended []exp
	c.mu.Lock()
	c.dlAt = time.Time{}
	var next time.Time
	for id, s := range c.streams {
		if !s.async || s.deadline.IsZero() {
			continue
		}
		if !s.deadline.After(now) {
			ended = append(ended, exp{s, id})
			continue
		}
		if next.IsZero() || s.deadline.Before(next) {
			next = s.deadline
		}
	}
	if !next.IsZero() && c.err == nil {
		c.dlAt = next
		c.dlTimer.Reset(time.Until(next))
	}
	c.mu.Unlock()
	for _, x := range ended {
		c.endAsync(x.cl, x.id, status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error()))
	}
}

// deliver hands a completed call to its caller: the done channel of a
// synchronous call, the callback of an asynchronous one (no lock held).
func (c *conn) deliver(cl *call, rb *connio.Batch) {
	if cl.async {
		c.mu.Lock()
		if cl.writing {
			cl.deferred = true // its starter delivers it (startAsync)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.e.finishAsync(c, cl, rb)
		return
	}
	cl.done <- struct{}{}
}

// finishAsync completes async call cl, which c ended: a refused stream is
// retried once on another connection, as Invoke does; otherwise the reply
// (or metadata) is delivered, the metrics recorded and the callback run.
func (e *Endpoint) finishAsync(c *conn, cl *call, rb *connio.Batch) {
	err := cl.result()
	if err == errRefused && cl.attempt == 0 {
		cl.rec.endAttempt(cl.actx, cl, codes.Unavailable)
		cl.reset()
		cl.attempt = 1
		cl.rec.startAttempt(cl.actx)
		if _, ok := e.startOn(cl, c); ok {
			return // in flight again
		}
	}
	if err == errRefused {
		err = status.Error(codes.Unavailable, "grpcdirect: stream refused by the server (GOAWAY)")
	}
	switch {
	case cl.abandoned:
	case err != nil:
		cl.deliverMD()
	default:
		err = cl.finishReply(cl.reply)
	}
	code := status.Code(err)
	cl.rec.endAttempt(cl.actx, cl, code)
	cl.rec.endCall(cl.actx, code)
	cl.callBack(err, rb)
}

// FlushBatch writes the requests batches left buffered (connio.Flusher);
// a write error closes the connection, failing its calls, as a failed
// request write does.
func (c *conn) FlushBatch() {
	c.lockWrite()
	if err := c.unlockWrite(); err != nil {
		c.close(fmt.Errorf("write: %w", err))
	}
}
