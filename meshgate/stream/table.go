package stream

import (
	"sync"

	"github.com/meshgate/meshgate/codec"
)

// Action is what the connection owner must do after Dispatch.
type Action uint8

// Dispatch outcomes.
const (
	NotStream  Action = iota // no exchange has this seq: handle the frame as before
	Queued                   // a message was queued (or an exchange ended normally)
	Overflowed               // the exchange overflowed and ended with result 6: tell the peer
	Cancelled                // the peer cancelled the exchange (CANCEL frame)
)

// Table maps seq → open exchange for one connection. Safe for concurrent
// use; Dispatch is meant for the connection's read goroutine and never
// blocks on a consumer.
type Table struct {
	lim Limits
	max int
	mu  sync.Mutex
	m   map[uint32]*Exchange
}

// NewTable returns a table of at most maxOpen exchanges, each bounded by l.
func NewTable(maxOpen int, l Limits) *Table {
	return &Table{lim: l, max: maxOpen, m: make(map[uint32]*Exchange)}
}

// Open registers a new exchange for seq; ok is false when seq is in use or
// the table is full.
func (t *Table) Open(seq uint32) (e *Exchange, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.m[seq]; dup || len(t.m) >= t.max {
		return nil, false
	}
	e = New(t.lim)
	t.m[seq] = e
	return e, true
}

// Get returns seq's exchange.
func (t *Table) Get(seq uint32) *Exchange {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[seq]
}

// Close forgets seq (its consumer is done with it).
func (t *Table) Close(seq uint32) {
	t.mu.Lock()
	delete(t.m, seq)
	t.mu.Unlock()
}

// Len returns the open exchanges.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// CancelAll ends every exchange with result 11 (the connection is gone).
func (t *Table) CancelAll() {
	t.mu.Lock()
	es := make([]*Exchange, 0, len(t.m))
	for _, e := range t.m {
		es = append(es, e)
	}
	clear(t.m)
	t.mu.Unlock()
	for _, e := range es {
		e.Cancel()
	}
}

// Dispatch hands frame f (read from the connection) to its exchange:
//
//   - CANCEL: the exchange is cancelled (result 11) and Gone is closed,
//     even when its request side had already ended.
//   - MORE: the body is queued; past the bound the exchange ends with
//     result 6 and Gone is closed (Overflowed: tell the peer).
//   - otherwise (the last request frame, or a final reply frame): a
//     non-empty body is queued as the last message, then the exchange ends
//     with the frame's result and ext 5 message; Recv drains what is
//     queued first.
//
// The exchange stays in the table until its owner calls Close, so later
// frames of an exchange that ended are dropped instead of starting a new
// one.
func (t *Table) Dispatch(f *codec.Frame) Action {
	t.mu.Lock()
	e := t.m[f.Seq]
	t.mu.Unlock()
	if e == nil {
		return NotStream
	}
	switch {
	case f.Flags&codec.FlagCancel != 0:
		e.Cancel()
		e.Abort()
		return Cancelled
	case f.Flags&codec.FlagMore != 0:
		if e.Offer(f.Body) != nil {
			e.Abort()
			return Overflowed
		}
		return Queued
	default:
		if len(f.Body) > 0 && f.Result == codec.ResultOK {
			if e.Offer(f.Body) != nil {
				e.Abort()
				return Overflowed
			}
		}
		msg, _ := f.ExtValue(codec.ExtErrorMsg)
		e.Finish(f.Result, string(msg))
		return Queued
	}
}

// MessageFrame fills f as one message of exchange seq: a request frame
// (response false) or a response frame with result 0, MORE set.
func MessageFrame(f *codec.Frame, cmd, seq uint32, uin uint64, response bool, body []byte) {
	fl := codec.FlagMore
	if response {
		fl |= codec.FlagResponse
	}
	*f = codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: fl, Body: body, Ext: f.Ext[:0]}
}

// EndFrame fills f as the final frame of exchange seq: on the request side
// the empty frame that only ends a client stream; on the response side the
// result (and, when result ≠ 0, the ext 5 message).
func EndFrame(f *codec.Frame, cmd, seq uint32, uin uint64, response bool, result uint16, msg string) {
	*f = codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Ext: f.Ext[:0]}
	if response {
		f.Flags = codec.FlagResponse
		f.Result = result
		if result != codec.ResultOK {
			f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtErrorMsg, Value: []byte(msg)})
		}
	}
}

// CancelFrame fills f as the CANCEL of exchange seq.
func CancelFrame(f *codec.Frame, cmd, seq uint32, uin uint64) {
	*f = codec.Frame{Cmd: cmd, Seq: seq, UIN: uin, Flags: codec.FlagCancel, Ext: f.Ext[:0]}
}
