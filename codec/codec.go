// Package codec defines MeshGate's protocol-neutral frame model and the
// contract every private-protocol codec implements.
//
// # The decode contract
//
// A Codec is a stateless, immutable value: one instance may be used by any
// number of goroutines at once. Connection state (the read buffer) belongs to
// the caller, typically a [Reader] owned by the connection's read goroutine.
//
// Decode receives the bytes read so far from a stream: a buffer that may hold
// part of a frame, exactly one frame, or several frames, with frame boundaries
// anywhere. It looks only at the front of the buffer and reports one of three
// outcomes:
//
//   - n > 0, err == nil: one whole frame of n bytes was decoded into f; the
//     caller consumes n bytes and may call Decode again on the rest.
//   - n == 0, err == nil: the buffer holds an incomplete frame. need is the
//     total number of bytes the frame occupies once known from the header, or
//     the number of bytes needed to learn it (always > len(buf)). The caller
//     reads more and calls Decode again with the same bytes at the front.
//   - err != nil: the stream is malformed ([ErrMalformed] wraps every such
//     error, [ErrFrameTooLarge] among them); the caller must close the
//     connection. A frame whose declared size exceeds the codec's maximum is
//     rejected from its header alone, before any byte of its body is read or
//     allocated.
//
// Decode never allocates for the body and never copies it: f.Body and every
// f.Ext[i].Value alias buf and are valid only until the caller overwrites or
// reuses those bytes. f.Ext is truncated and re-appended, so a Frame reused
// across calls reaches steady state with zero allocations.
//
// Append encodes f and appends it to dst, returning the extended slice; it
// allocates only when dst lacks capacity. Append validates what the wire
// format cannot represent (an extension value too long, a frame over the
// maximum) and returns an error wrapping [ErrInvalidFrame] without writing.
package codec

import (
	"errors"
	"fmt"
)

// Flags are the protocol-neutral frame flags. Codecs map their own wire bits
// onto these meanings (MGP/1 uses exactly these bit positions).
type Flags uint16

// Frame flag bits.
const (
	FlagResponse  Flags = 1 << 0 // a reply to a request with the same Seq
	FlagOneway    Flags = 1 << 1 // a request that expects no reply
	FlagHeartbeat Flags = 1 << 2 // keepalive; answered with a response heartbeat, no body
	FlagPush      Flags = 1 << 3 // server-initiated message, no reply
	FlagMore      Flags = 1 << 4 // more frames of this exchange (seq) follow: a stream
	FlagCancel    Flags = 1 << 5 // the requester gave up the exchange (seq); no reply
)

// Has reports whether every bit of g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

// Well-known extension keys (docs/protocol.md).
const (
	ExtTraceparent uint16 = 1
	ExtAuth        uint16 = 2
	ExtDeadline    uint16 = 3
	ExtCaller      uint16 = 4
	ExtErrorMsg    uint16 = 5
	// ExtAppMin is the first application-defined key; keys >= ExtAppMin
	// travel as binary gRPC metadata x-mgp-ext-<key>-bin.
	ExtAppMin uint16 = 0x8000
)

// Ext is one key/value extension entry. Value aliases the decode buffer.
type Ext struct {
	Key   uint16
	Value []byte
}

// Frame is one private-protocol message in protocol-neutral form.
type Frame struct {
	Cmd    uint32 // command id: which operation
	Seq    uint32 // requester-chosen sequence number, echoed by the response
	UIN    uint64 // user id the request is about (0 = none)
	Flags  Flags
	Result uint16 // 0 on requests; result code on responses (see Result*)
	Ext    []Ext  // extensions in wire order; padding is not represented
	Body   []byte // opaque payload
}

// Reset clears f for reuse, keeping the capacity of Ext.
func (f *Frame) Reset() {
	ext := f.Ext[:0]
	*f = Frame{Ext: ext}
}

// ExtValue returns the value of the first extension with key k.
func (f *Frame) ExtValue(k uint16) ([]byte, bool) {
	for i := range f.Ext {
		if f.Ext[i].Key == k {
			return f.Ext[i].Value, true
		}
	}
	return nil, false
}

// SetExt replaces the first extension with key k, or appends one.
func (f *Frame) SetExt(k uint16, v []byte) {
	for i := range f.Ext {
		if f.Ext[i].Key == k {
			f.Ext[i].Value = v
			return
		}
	}
	f.Ext = append(f.Ext, Ext{Key: k, Value: v})
}

// IsRequest reports whether f expects or is part of a request (not a
// response, push or heartbeat).
func (f *Frame) IsRequest() bool {
	return f.Flags&(FlagResponse|FlagPush|FlagHeartbeat) == 0
}

// Codec encodes and decodes one private protocol. See the package doc for
// the contract.
type Codec interface {
	// Name is the registry name, e.g. "mgp".
	Name() string
	// Decode decodes the frame at the front of buf into f.
	Decode(buf []byte, f *Frame) (n, need int, err error)
	// Append appends the encoding of f to dst.
	Append(dst []byte, f *Frame) ([]byte, error)
	// MaxFrameSize is the largest whole frame, in bytes, Decode accepts.
	MaxFrameSize() int
}

// DefaultMaxFrameSize is the frame limit when a codec is not told otherwise.
const DefaultMaxFrameSize = 4 << 20

// Sentinel errors. Every decode failure wraps ErrMalformed.
var (
	ErrMalformed     = errors.New("codec: malformed frame")
	ErrFrameTooLarge = fmt.Errorf("%w: frame exceeds maximum size", ErrMalformed)
	ErrInvalidFrame  = errors.New("codec: frame cannot be encoded")
	ErrUnknownCodec  = errors.New("codec: unknown codec")
)

// FieldError is a malformed-frame error naming the offending field.
type FieldError struct {
	Field  string // wire field name, e.g. "stx", "header_len"
	Value  uint64 // the value found
	Reason string // what was expected
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("codec: malformed frame: %s=%#x: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes FieldError match ErrMalformed.
func (e *FieldError) Unwrap() error { return ErrMalformed }

// TooLargeError reports a frame whose declared size exceeds the limit.
type TooLargeError struct {
	Size, Max uint64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("codec: malformed frame: declared size %d exceeds maximum %d", e.Size, e.Max)
}

// Unwrap makes TooLargeError match ErrFrameTooLarge and ErrMalformed.
func (e *TooLargeError) Unwrap() error { return ErrFrameTooLarge }
