// Package stream holds the state of MGP stream exchanges (docs/protocol.md
// "Push and streams"): several frames with the same seq and the MORE flag
// form one exchange; the final frame (MORE clear) carries the result;
// CANCEL gives the exchange up.
//
// An [Exchange] is one such exchange as seen by the side receiving its
// messages: a bounded queue between the connection's read goroutine, which
// never blocks ([Exchange.Offer] refuses past the bound and the exchange
// ends with result 6, overloaded), and the consumer ([Exchange.Recv]), e.g.
// a gRPC stream handler that sends each message on. A slow consumer
// therefore costs its own exchange, never the other exchanges multiplexed
// on the same connection. A [Table] maps seq → Exchange for one connection
// and dispatches the frames read from it.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/meshgate/meshgate/codec"
)

// ErrOverflow: a message arrived while the exchange's buffer was full.
var ErrOverflow = errors.New("stream: exchange buffer full")

// EndError is how an exchange that did not end with result 0 ends: the
// result of its final frame (or the local cause: 6 overflow, 11 cancel)
// and its message.
type EndError struct {
	Result uint16
	Msg    string
}

func (e *EndError) Error() string {
	return fmt.Sprintf("stream: exchange ended with result %d: %s", e.Result, e.Msg)
}

// Limits bound one exchange's buffer.
type Limits struct {
	Messages int // messages waiting; default 64
	Bytes    int // bytes waiting; default 4 MiB
}

// Exchange is one stream exchange's receive side. Offer and Finish are
// called by the producer (a connection's read loop), Recv by one consumer.
type Exchange struct {
	lim    Limits
	wake   chan struct{} // capacity 1: a message or the end arrived
	mu     sync.Mutex
	q      [][]byte
	head   int
	bytes  int
	ended  bool
	end    error // nil: ended with result 0 (Recv returns io.EOF)
	cancel bool  // ended locally (Cancel or overflow): the peer must be told

	goneOnce sync.Once
	gone     chan struct{} // closed by Abort

	ext []codec.Ext // application extensions of reply frames not yet taken (AddExt)
}

// MaxExt bounds the application extensions an exchange keeps between
// TakeExt calls; more are dropped.
const MaxExt = 32

// AddExt keeps copies of the application extensions (keys >= 0x8000) of a
// frame of the exchange, for the consumer's TakeExt: a reply's response
// header and trailer metadata. Call it before Offer or Finish of the same
// frame, so that the consumer sees them with that message or the end. At
// most MaxExt are kept.
func (e *Exchange) AddExt(ext []codec.Ext) {
	if len(ext) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range ext {
		if x.Key < codec.ExtAppMin || len(e.ext) >= MaxExt {
			continue
		}
		e.ext = append(e.ext, codec.Ext{Key: x.Key, Value: append([]byte(nil), x.Value...)})
	}
}

// TakeExt returns the extensions AddExt kept since the last call.
func (e *Exchange) TakeExt() []codec.Ext {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.ext
	e.ext = nil
	return x
}

// New returns an open exchange bounded by l.
func New(l Limits) *Exchange {
	if l.Messages <= 0 {
		l.Messages = 64
	}
	if l.Bytes <= 0 {
		l.Bytes = 4 << 20
	}
	return &Exchange{lim: l, wake: make(chan struct{}, 1), gone: make(chan struct{})}
}

// Abort closes Gone: the exchange was given up as a whole (a CANCEL frame,
// or an overflow), which the owner must act on at once — even after the
// request side ended, even while its consumer is blocked elsewhere.
func (e *Exchange) Abort() { e.goneOnce.Do(func() { close(e.gone) }) }

// Gone is closed once the exchange was given up: the peer cancelled it or
// its buffer overflowed. Err then says which.
func (e *Exchange) Gone() <-chan struct{} { return e.gone }

// Err returns how the exchange ended (nil while open or after result 0).
func (e *Exchange) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.end
}

func (e *Exchange) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Offer queues a copy of msg. It never blocks. Past the bound it ends the
// exchange with result 6 and returns ErrOverflow: the caller tells the
// peer (a CANCEL frame upstream, or a final frame with result 6
// downstream). Offer on an ended exchange drops msg and returns nil.
func (e *Exchange) Offer(msg []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return nil
	}
	if len(e.q)-e.head >= e.lim.Messages || e.bytes+len(msg) > e.lim.Bytes {
		e.finishLocked(&EndError{Result: codec.ResultOverloaded, Msg: fmt.Sprintf("stream buffer full (%d messages, %d bytes)", e.lim.Messages, e.lim.Bytes)}, true)
		return ErrOverflow
	}
	if e.head > 0 && e.head == len(e.q) {
		clear(e.q)
		e.q, e.head = e.q[:0], 0
	}
	e.q = append(e.q, append([]byte(nil), msg...))
	e.bytes += len(msg)
	e.signal()
	return nil
}

// Finish ends the exchange with result and message (the final frame).
// Messages already queued stay readable before the end.
func (e *Exchange) Finish(result uint16, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if result == codec.ResultOK {
		e.finishLocked(nil, false)
	} else {
		e.finishLocked(&EndError{Result: result, Msg: msg}, false)
	}
}

// Cancel ends the exchange locally with result 11 (the consumer gave up);
// queued messages are dropped. It reports whether this call ended it.
func (e *Exchange) Cancel() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return false
	}
	e.finishLocked(&EndError{Result: codec.ResultCancelled, Msg: "cancelled"}, true)
	clear(e.q)
	e.q, e.head, e.bytes = e.q[:0], 0, 0
	return true
}

func (e *Exchange) finishLocked(err error, local bool) {
	if e.ended {
		return
	}
	e.ended, e.end, e.cancel = true, err, local
	e.signal()
}

// Ended reports whether the exchange has ended, and whether locally
// (overflow or Cancel: the peer must be told).
func (e *Exchange) Ended() (ended, local bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ended, e.cancel
}

// Buffered returns the messages waiting.
func (e *Exchange) Buffered() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.q) - e.head
}

// Recv returns the next message; after the last one, io.EOF when the
// exchange ended with result 0, else an *EndError. It blocks until one of
// those or ctx ends (then ctx's error; the exchange stays open).
func (e *Exchange) Recv(ctx context.Context) ([]byte, error) {
	for {
		e.mu.Lock()
		if e.head < len(e.q) {
			m := e.q[e.head]
			e.q[e.head] = nil
			e.head++
			e.bytes -= len(m)
			more := e.head < len(e.q) || e.ended
			e.mu.Unlock()
			if more {
				e.signal()
			}
			return m, nil
		}
		if e.ended {
			err := e.end
			e.mu.Unlock()
			e.signal() // later Recv calls see the end too
			if err == nil {
				return nil, io.EOF
			}
			return nil, err
		}
		e.mu.Unlock()
		select {
		case <-e.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
