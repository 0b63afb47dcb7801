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
	flat []byte // materialized form of a multi-buffer data, when asked for
}

// SetBytes makes m carry a copy of b in a pooled buffer, releasing what m
// held. The copy is needed because gRPC may still be writing a request after
// the call returns; the pooled buffer goes back when gRPC frees it.
func (m *Message) SetBytes(b []byte) {
	m.Free()
	m.data = mem.BufferSlice{mem.Copy(b, mem.DefaultBufferPool())}
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
	m.data, m.flat = nil, nil
}

// take hands m's buffers to gRPC (which frees them once written); m
// becomes empty.
func (m *Message) take() mem.BufferSlice {
	d := m.data
	m.data, m.flat = nil, nil
	if d == nil {
		return mem.BufferSlice{}
	}
	return d
}
