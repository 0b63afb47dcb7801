package privconn

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
)

// ErrDeadlineExceeded completes a Start whose deadline passed before its
// reply arrived; it wraps context.DeadlineExceeded.
var ErrDeadlineExceeded = fmt.Errorf("privconn: reply deadline: %w", context.DeadlineExceeded)

// ErrCanceled completes a Start abandoned by Cancel; it wraps
// context.Canceled.
var ErrCanceled = fmt.Errorf("privconn: request cancelled: %w", context.Canceled)

// Start sends req without waiting for its reply: it registers done under
// a fresh seq of the connection's own (req.Seq is overwritten and the
// response flags cleared, as by Do), writes the frame and returns.
//
// When Start returns nil, done is called exactly once, from whichever
// goroutine completes the request:
//   - the connection's reader, with the reply (resp aliases the reader's
//     buffer and is valid only during the call: Clone it to keep it);
//   - the connection's deadline timer, with an error wrapping
//     context.DeadlineExceeded (ErrDeadlineExceeded) once deadline passed;
//   - the goroutine that closes or fails the connection, with an error
//     wrapping ErrClosed (possibly the caller of Start itself, before
//     Start returns, when the write fails);
//   - Cancel's caller, with ErrCanceled.
//
// done must not block: it runs on the connection's reader. A late reply
// (after the deadline or Cancel) is dropped and counted like Do's.
//
// When Start returns an error, done is never called and the request was
// not sent: ErrTooManyInFlight, an error wrapping ErrNotSent (connection
// closed), ErrDeadlineExceeded (deadline already passed), or
// codec.ErrInvalidFrame (req cannot be encoded); or the write failed, with
// an error wrapping ErrClosed (as Do's: part of the frame may have left,
// so it counts as sent and failed).
//
// Deadlines cost no timer per request: one timer per connection is armed
// for the earliest deadline among the pending Starts (re-armed only when a
// request with an earlier deadline arrives). When it fires it completes
// every Start whose deadline has passed and re-arms for the next. A
// request therefore expires no earlier than its deadline and late only by
// the runtime timer's latency plus one scan of the pending requests (at
// most MaxInFlight); the scan runs about once per earliest deadline, not
// per request.
func (cn *Conn) Start(req *codec.Frame, deadline time.Time, done func(resp *codec.Frame, err error)) error {
	return cn.StartHandle(req, deadline, nil, done)
}

// Handle names a Start in flight so that another goroutine may cancel it
// (Ticket, Cancel). StartHandle sets it when it registers the request,
// before any completion, and the completion clears it before calling
// back. Safe for concurrent use.
//
// Batch, set by the caller before StartHandle, is the write batch of the
// reading goroutine that starts the request (nil: write at once): the
// request is then written when that batch is flushed (connio.Batch).
// StartHandle consumes it (sets it to nil), so it never outlives the
// start.
type Handle struct {
	cn  atomic.Pointer[Conn]
	seq atomic.Uint32

	Batch *connio.Batch
	// reply is the batch of the connection reader that calls the
	// completion with a reply (nil on any other completion); written by
	// the completer just before the callback.
	reply *connio.Batch
}

// ReplyBatch is, during a completion with a reply, the write batch of the
// connection reader running it: a callback that writes the reply to
// another connection may append it there and leave the write to the
// reader's flush (connio.Batch). Nil otherwise; only valid during the
// callback.
func (h *Handle) ReplyBatch() *connio.Batch { return h.reply }

// Ticket is what a Handle names: a Start on a connection (zero: none).
type Ticket struct {
	cn  *Conn
	seq uint32
}

// Ticket returns the Start the handle names now (zero when none).
func (h *Handle) Ticket() Ticket {
	cn := h.cn.Load()
	if cn == nil {
		return Ticket{}
	}
	return Ticket{cn: cn, seq: h.seq.Load()}
}

// Cancel cancels the Start t names if it is still pending (Conn.Cancel);
// a ticket of a request already completed cancels nothing.
func (t Ticket) Cancel() bool {
	if t.cn == nil {
		return false
	}
	return t.cn.Cancel(t.seq)
}

// StartHandle is Start that also records the request in h (nil: none)
// until it completes.
func (cn *Conn) StartHandle(req *codec.Frame, deadline time.Time, h *Handle, done func(resp *codec.Frame, err error)) error {
	var dl int64
	if !deadline.IsZero() {
		if !time.Now().Before(deadline) {
			return ErrDeadlineExceeded
		}
		dl = deadline.UnixNano()
	}
	if cn.inflight.Add(1) > int64(cn.opts.MaxInFlight) {
		cn.inflight.Add(-1)
		return ErrTooManyInFlight
	}
	w := waiterPool.Get().(*waiter)
	w.done, w.deadline, w.h = done, dl, h
	w.state.Store(stateWriting)
	w.refs.Store(2) // Start's and the completion's
	seq, err := cn.register(w)
	if err != nil {
		cn.inflight.Add(-1)
		putAsync(w)
		return err
	}
	req.Seq = seq
	req.Flags &^= codec.FlagResponse | codec.FlagOneway | codec.FlagHeartbeat | codec.FlagPush
	var b *connio.Batch
	if h != nil {
		b, h.Batch = h.Batch, nil
	}
	werr := cn.w.WriteFrameIn(req, b)
	if werr != nil && cn.unregister(seq, w) {
		// Still ours: nobody will complete it.
		if h != nil {
			h.cn.Store(nil)
		}
		cn.inflight.Add(-1)
		putAsync(w)
		if errors.Is(werr, codec.ErrInvalidFrame) || errors.Is(werr, ErrWriteBacklog) {
			return werr
		}
		werr = fmt.Errorf("%w: write: %w", ErrClosed, werr)
		cn.fail(werr)
		return werr
	}
	if werr == nil {
		cn.sent.Add(1)
	} else if !errors.Is(werr, codec.ErrInvalidFrame) && !errors.Is(werr, ErrWriteBacklog) {
		// Taken by a completer meanwhile; the write error still closes
		// the connection.
		cn.fail(fmt.Errorf("%w: write: %w", ErrClosed, werr))
	}
	if !w.state.CompareAndSwap(stateWriting, stateWritten) {
		// A failure, the deadline or Cancel took w while req was being
		// encoded and left its completion to us (req is ours until now).
		cn.complete(w, nil, w.err, nil)
	}
	cn.unref(w)
	return nil
}

// States of a Start's waiter. Until Start has encoded the frame (writing)
// the request's frame is Start's: a completer other than the reader (which
// sees a reply only after the frame went out) leaves the callback to
// Start (deferred) instead of calling it.
const (
	stateWriting uint32 = iota
	stateWritten
	stateDeferred
)

// Cancel completes the Start pending under seq with ErrCanceled, if it is
// still pending; a reply arriving later is dropped and counted (Late). It
// reports whether it completed the request.
func (cn *Conn) Cancel(seq uint32) bool {
	cn.mu.Lock()
	w, ok := cn.pending[seq]
	if !ok || w.done == nil {
		cn.mu.Unlock()
		return false
	}
	delete(cn.pending, seq)
	if len(cn.abandoned) < 1<<16 {
		cn.abandoned[seq] = time.Now().UnixNano()
	}
	cn.mu.Unlock()
	cn.completeErr(w, ErrCanceled)
	return true
}

// completeErr ends a Start with err, from a completer other than the
// reader: at once, or by Start itself when it is still encoding the frame.
// The caller has removed w from the pending map.
func (cn *Conn) completeErr(w *waiter, err error) {
	w.err = err
	if w.state.CompareAndSwap(stateWriting, stateDeferred) {
		return
	}
	cn.complete(w, nil, err, nil)
}

// complete ends a Start: it frees the in-flight slot, calls the callback
// and drops the completion's reference to w. rb is the reader's batch
// when the reader completes with a reply (Handle.ReplyBatch).
func (cn *Conn) complete(w *waiter, resp *codec.Frame, err error, rb *connio.Batch) {
	done := w.done
	if w.h != nil {
		w.h.cn.Store(nil)
		w.h.reply = rb
	}
	cn.inflight.Add(-1)
	done(resp, err)
	cn.unref(w)
}

// unref drops a reference to a Start's waiter; the last one returns it to
// the pool.
func (cn *Conn) unref(w *waiter) {
	if w.refs.Add(-1) == 0 {
		putAsync(w)
	}
}

func putAsync(w *waiter) {
	w.done, w.deadline, w.err, w.h = nil, 0, nil, nil
	waiterPool.Put(w)
}

// expiry is the connection's one deadline timer (under Conn.mu).
type expiry struct {
	t  *time.Timer // nil until the first deadline
	at int64       // unix ns the timer is armed for; 0 = not armed
}

// arm makes the timer fire by dl (unix ns); cn.mu held.
func (cn *Conn) armExpiry(dl int64) {
	x := &cn.expiry
	if dl == 0 || (x.at != 0 && x.at <= dl) {
		return
	}
	x.at = dl
	d := time.Duration(dl - time.Now().UnixNano())
	if x.t == nil {
		x.t = time.AfterFunc(d, cn.expire)
		return
	}
	x.t.Reset(d)
}

// stop disarms the timer; cn.mu need not be held once the connection is
// marked closed (expire then does nothing).
func (x *expiry) stop() {
	if t := x.t; t != nil {
		t.Stop()
	}
}

// expire completes every pending Start whose deadline has passed with
// ErrDeadlineExceeded and re-arms the timer for the earliest remaining
// deadline.
func (cn *Conn) expire() {
	var due [16]*waiter
	expired := due[:0]
	cn.mu.Lock()
	if cn.closed {
		cn.mu.Unlock()
		return
	}
	now := time.Now().UnixNano()
	cn.expiry.at = 0
	var next int64
	for seq, w := range cn.pending {
		if w.done == nil || w.deadline == 0 {
			continue
		}
		if w.deadline <= now {
			delete(cn.pending, seq)
			if len(cn.abandoned) < 1<<16 {
				cn.abandoned[seq] = now
			}
			expired = append(expired, w)
			continue
		}
		if next == 0 || w.deadline < next {
			next = w.deadline
		}
	}
	cn.armExpiry(next)
	cn.mu.Unlock()
	for _, w := range expired {
		cn.completeErr(w, ErrDeadlineExceeded)
	}
}
