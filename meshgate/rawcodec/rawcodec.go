// Package rawcodec is a gRPC encoding.CodecV2 that moves message bytes
// as they are: no generated stubs, no protobuf re-marshal. MeshGate's gRPC
// side uses it with grpc.ForceCodecV2 (clients) and grpc.ForceServerCodecV2
// (servers), so a private frame's body becomes the gRPC message unchanged and
// back.
//
// Supported message types:
//
//   - *Message: the zero-copy form. Marshal hands its buffer to gRPC;
//     Unmarshal keeps a reference to gRPC's receive buffers instead of
//     copying them (call Message.Free when done).
//   - *[]byte: Unmarshal copies into the slice (reusing its capacity);
//     Marshal wraps it without copying.
//   - []byte: Marshal only, without copying.
//
// Any other type (generated protobuf messages, e.g. the gRPC health and
// reflection services that share a server with the raw handlers) goes to
// grpc-go's registered "proto" codec.
package rawcodec

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // fallback for generated messages
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Name is the codec's content-subtype name. It is forced on calls, never
// negotiated, so "proto" keeps the wire compatible with ordinary peers.
const Name = "proto"

// ErrType reports a message of a type this codec cannot carry.
var ErrType = errors.New("rawcodec: unsupported message type")

// Codec is the raw-bytes codec. The zero value is ready to use.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return Name }

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *Message:
		return m.take(), nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
	}
	if pc := protoCodec(); pc != nil && isProto(v) {
		return pc.Marshal(v)
	}
	return nil, fmt.Errorf("%w %T", ErrType, v)
}

// Unmarshal implements encoding.CodecV2.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *Message:
		m.Free()
		data.Ref()
		m.data = data
		return nil
	case *[]byte:
		n := data.Len()
		if cap(*m) < n {
			*m = make([]byte, n)
		}
		*m = (*m)[:n]
		data.CopyTo(*m)
		return nil
	}
	if pc := protoCodec(); pc != nil && isProto(v) {
		return pc.Unmarshal(data, v)
	}
	return fmt.Errorf("%w %T", ErrType, v)
}

// protoCodec is grpc-go's proto codec (registered by package
// google.golang.org/grpc/encoding/proto, which grpc imports).
func protoCodec() encoding.CodecV2 {
	if c := encoding.GetCodecV2("proto"); c != nil {
		if _, self := c.(Codec); !self {
			return c
		}
	}
	return nil
}

func isProto(v any) bool {
	_, ok := v.(proto.Message)
	return ok
}

// Message is a message body held in gRPC memory buffers. The zero value is
// an empty message. A Message is not safe for concurrent use.
type Message struct {
	data mem.BufferSlice
	flat []byte        // materialized form of a multi-buffer data, when asked for
	one  [1]mem.Buffer // data's storage when it is one buffer set here (no slice allocated)
}

// SetBytes makes m carry a copy of b in a pooled buffer, releasing what m
// held. The copy is needed because gRPC may still be writing a request after
// the call returns; the pooled buffer goes back when gRPC frees it. It
// allocates nothing once the pools are warm: a body of at most
// mem's pooling threshold (1 KiB, which mem.Copy would copy to a new
// slice) takes a buffer of BufferPool's own.
func (m *Message) SetBytes(b []byte) {
	m.Free()
	buf := BufferPool.Get(len(b))
	copy(*buf, b)
	m.setOne(mem.NewBuffer(buf, BufferPool))
}

// SetSingle makes m carry buffer b (taking over its reference), releasing
// what m held.
func (m *Message) SetSingle(b mem.Buffer) {
	m.Free()
	m.setOne(b)
}

func (m *Message) setOne(b mem.Buffer) {
	m.one[0] = b
	m.data = m.one[:1:1]
}

// TakeInto hands m's buffers to a transport as take does, a single buffer
// in dst's storage (the transport's own: nothing allocated); m becomes
// empty.
func (m *Message) TakeInto(dst *[1]mem.Buffer) mem.BufferSlice {
	if len(m.data) != 1 {
		return m.take()
	}
	dst[0] = m.data[0]
	m.data, m.flat, m.one[0] = nil, nil, nil
	return dst[:1:1]
}

// BufferPool is mem.DefaultBufferPool, except that buffers for at most
// 1 KiB (mem's pooling threshold, at or under which mem.NewBuffer does not
// pool a buffer: mem.Copy allocates one per message) come from a pool of
// its own, one byte longer than the threshold, so that mem.NewBuffer pools
// them.
var BufferPool mem.BufferPool = &smallBuffers{}

type smallBuffers struct{ p sync.Pool }

const smallCap = 1<<10 + 1

func (s *smallBuffers) Get(n int) *[]byte {
	if n > smallCap || !mem.IsBelowBufferPoolingThreshold(n) {
		return mem.DefaultBufferPool().Get(n)
	}
	b, _ := s.p.Get().(*[]byte)
	if b == nil {
		nb := make([]byte, smallCap)
		b = &nb
	}
	*b = (*b)[:n]
	return b
}

func (s *smallBuffers) Put(b *[]byte) {
	if cap(*b) != smallCap {
		mem.DefaultBufferPool().Put(b)
		return
	}
	s.p.Put(b)
}

// SetBuffer makes m carry data (taking over its reference).
func (m *Message) SetBuffer(data mem.BufferSlice) {
	m.Free()
	m.data = data
}

// Len is the message length in bytes.
func (m *Message) Len() int { return m.data.Len() }

// Bytes returns the message as one contiguous slice, valid until Free. A
// message received in one buffer (the common case) is returned without
// copying.
func (m *Message) Bytes() []byte {
	switch len(m.data) {
	case 0:
		return nil
	case 1:
		return m.data[0].ReadOnlyData()
	}
	if m.flat == nil {
		m.flat = m.data.Materialize()
	}
	return m.flat
}

// Buffers returns the underlying buffers, valid until Free.
func (m *Message) Buffers() mem.BufferSlice { return m.data }

// Free releases the buffers m holds; m becomes empty and reusable.
func (m *Message) Free() {
	if m.data != nil {
		m.data.Free()
	}
	m.data, m.flat, m.one[0] = nil, nil, nil
}

// take hands m's buffers to gRPC (which frees them once written); m
// becomes empty.
func (m *Message) take() mem.BufferSlice {
	d := m.data
	if len(d) == 1 && &d[0] == &m.one[0] {
		// The transport keeps the slice past m's next use: its own.
		d = mem.BufferSlice{d[0]}
	}
	m.data, m.flat, m.one[0] = nil, nil, nil
	if d == nil {
		return mem.BufferSlice{}
	}
	return d
}
