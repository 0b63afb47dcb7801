package privconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshgate/meshgate/codec"
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
	w.done, w.deadline = done, dl
	seq, err := cn.register(w)
	if err != nil {
		cn.inflight.Add(-1)
		w.done, w.deadline = nil, 0
		waiterPool.Put(w)
		return err
	}
	req.Seq = seq
	req.Flags &^= codec.FlagResponse | codec.FlagOneway | codec.FlagHeartbeat | codec.FlagPush
	if err := cn.w.WriteFrame(req); err != nil {
		if !cn.unregister(seq, w) {
			// The reader, the deadline timer or a failure took w and
			// completes it; the write error still closes the connection.
			if !errors.Is(err, codec.ErrInvalidFrame) {
				cn.fail(fmt.Errorf("%w: write: %w", ErrClosed, err))
			}
			return nil
		}
		cn.inflight.Add(-1)
		w.done, w.deadline = nil, 0
		waiterPool.Put(w)
		if errors.Is(err, codec.ErrInvalidFrame) {
			return err
		}
		err = fmt.Errorf("%w: write: %w", ErrClosed, err)
		cn.fail(err)
		return err
	}
	cn.sent.Add(1)
	return nil
}

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
	cn.complete(w, nil, ErrCanceled)
	return true
}

// complete ends a Start: it frees the in-flight slot and the waiter, then
// calls its callback. The caller has removed w from the pending map.
func (cn *Conn) complete(w *waiter, resp *codec.Frame, err error) {
	done := w.done
	w.done, w.deadline = nil, 0
	waiterPool.Put(w)
	cn.inflight.Add(-1)
	done(resp, err)
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
		cn.complete(w, nil, ErrDeadlineExceeded)
	}
}
