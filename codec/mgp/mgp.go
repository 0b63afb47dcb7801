// Package mgp implements MGP/1, MeshGate's reference private protocol
// (docs/protocol.md): a 32-byte big-endian header, TLV extensions, an
// opaque body and an etx trailer.
//
// It uses the standard library only, so the Envoy wasm filter (filters/)
// compiles it unchanged.
package mgp

import (
	"encoding/binary"
	"fmt"

	"github.com/meshgate/meshgate/codec"
)

// Wire constants.
const (
	STX          = 0x02
	ETX          = 0x03
	Version      = 1
	HeaderSize   = 32     // fixed part of the header
	MaxHeaderLen = 4096   // largest header_len, extensions included
	prefixSize   = 8      // stx, version, header_len, body_len: enough to size a frame
	flagMask     = 0x003f // bits 0-5; 6-15 reserved
)

// Name is the registry name of the MGP/1 codec.
const Name = "mgp"

func init() {
	codec.Register(Name, func(max int) (codec.Codec, error) { return New(max), nil })
}

// Codec is the MGP/1 codec. The zero value is not usable; call New.
type Codec struct {
	max int
}

var _ codec.Codec = (*Codec)(nil)

// New returns an MGP/1 codec accepting frames up to maxFrameSize bytes
// (0 = codec.DefaultMaxFrameSize).
func New(maxFrameSize int) *Codec {
	if maxFrameSize <= 0 {
		maxFrameSize = codec.DefaultMaxFrameSize
	}
	return &Codec{max: maxFrameSize}
}

// Name implements codec.Codec.
func (c *Codec) Name() string { return Name }

// MaxFrameSize implements codec.Codec.
func (c *Codec) MaxFrameSize() int { return c.max }

// FrameSize returns the total size of the frame at the front of buf once its
// 8-byte prefix is present, validating the prefix. ok is false if buf is
// shorter than the prefix.
func (c *Codec) FrameSize(buf []byte) (size int, ok bool, err error) {
	if len(buf) > 0 && buf[0] != STX {
		return 0, false, &codec.FieldError{Field: "stx", Value: uint64(buf[0]), Reason: "want 0x02"}
	}
	if len(buf) > 1 && buf[1] != Version {
		return 0, false, &codec.FieldError{Field: "version", Value: uint64(buf[1]), Reason: "want 1"}
	}
	if len(buf) < prefixSize {
		return 0, false, nil
	}
	hl := uint64(binary.BigEndian.Uint16(buf[2:4]))
	if hl < HeaderSize || hl%4 != 0 || hl > MaxHeaderLen {
		return 0, false, &codec.FieldError{Field: "header_len", Value: hl, Reason: "want a multiple of 4 in [32, 4096]"}
	}
	total := hl + uint64(binary.BigEndian.Uint32(buf[4:8])) + 1
	if total > uint64(c.max) {
		return 0, false, &codec.TooLargeError{Size: total, Max: uint64(c.max)}
	}
	return int(total), true, nil
}

// Decode implements codec.Codec.
func (c *Codec) Decode(buf []byte, f *codec.Frame) (n, need int, err error) {
	total, ok, err := c.FrameSize(buf)
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, HeaderSize + 1, nil
	}
	if len(buf) < total {
		return 0, total, nil
	}
	hl := int(binary.BigEndian.Uint16(buf[2:4]))
	if buf[total-1] != ETX {
		return 0, 0, &codec.FieldError{Field: "etx", Value: uint64(buf[total-1]), Reason: "want 0x03"}
	}
	f.Cmd = binary.BigEndian.Uint32(buf[8:12])
	f.Seq = binary.BigEndian.Uint32(buf[12:16])
	f.UIN = binary.BigEndian.Uint64(buf[16:24])
	f.Flags = codec.Flags(binary.BigEndian.Uint16(buf[24:26]) & flagMask)
	f.Result = binary.BigEndian.Uint16(buf[26:28])
	f.Ext = f.Ext[:0]
	if err := codec.ParseExt(buf[HeaderSize:hl], false, f); err != nil {
		return 0, 0, err
	}
	f.Body = buf[hl : total-1 : total-1]
	return total, 0, nil
}

// Size returns the encoded size of f, or an error if f cannot be encoded.
// An error message (ext 5) too long for the header limit does not make f
// unencodable: Append truncates it, and Size reports the truncated size.
func (c *Codec) Size(f *codec.Frame) (size, headerLen int, err error) {
	size, headerLen, _, err = c.layout(f)
	return size, headerLen, err
}

// layout is Size plus msgLen, the length the first ext 5 value is encoded
// with when it must be truncated to fit MaxHeaderLen (-1: not truncated).
func (c *Codec) layout(f *codec.Frame) (size, headerLen, msgLen int, err error) {
	el, err := codec.ExtLen(f.Ext)
	if err != nil {
		return 0, 0, -1, err
	}
	msgLen = -1
	headerLen = HeaderSize + (el+3)&^3
	if over := headerLen - MaxHeaderLen; over > 0 {
		if msg, ok := f.ExtValue(codec.ExtErrorMsg); ok && len(msg) >= over {
			// Keep the result code and as much of the message as fits,
			// cut on a UTF-8 boundary (docs/protocol.md, ext 5).
			msgLen = len(codec.TruncateUTF8(msg, len(msg)-over))
			el -= len(msg) - msgLen
			headerLen = HeaderSize + (el+3)&^3
		}
	}
	if headerLen > MaxHeaderLen {
		return 0, 0, -1, fmt.Errorf("%w: header_len %d exceeds %d", codec.ErrInvalidFrame, headerLen, MaxHeaderLen)
	}
	size = headerLen + len(f.Body) + 1
	if size > c.max {
		return 0, 0, -1, fmt.Errorf("%w: frame is %d bytes, max %d", codec.ErrInvalidFrame, size, c.max)
	}
	return size, headerLen, msgLen, nil
}

// Append implements codec.Codec.
func (c *Codec) Append(dst []byte, f *codec.Frame) ([]byte, error) {
	size, hl, msgLen, err := c.layout(f)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = codec.Grow(dst, size)
	b := dst[start : start+size]
	b[0], b[1] = STX, Version
	binary.BigEndian.PutUint16(b[2:], uint16(hl))
	binary.BigEndian.PutUint32(b[4:], uint32(len(f.Body)))
	binary.BigEndian.PutUint32(b[8:], f.Cmd)
	binary.BigEndian.PutUint32(b[12:], f.Seq)
	binary.BigEndian.PutUint64(b[16:], f.UIN)
	binary.BigEndian.PutUint16(b[24:], uint16(f.Flags)&flagMask)
	binary.BigEndian.PutUint16(b[26:], f.Result)
	binary.BigEndian.PutUint32(b[28:], 0)
	off := HeaderSize
	for i := range f.Ext {
		e := &f.Ext[i]
		v := e.Value
		if msgLen >= 0 && e.Key == codec.ExtErrorMsg {
			v, msgLen = v[:msgLen], -1 // only the first ext 5 is truncated
		}
		binary.BigEndian.PutUint16(b[off:], e.Key)
		binary.BigEndian.PutUint16(b[off+2:], uint16(len(v)))
		off += 4 + copy(b[off+4:], v)
	}
	clear(b[off:hl])
	copy(b[hl:], f.Body)
	b[size-1] = ETX
	return dst, nil
}
