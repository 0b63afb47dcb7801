package fixed

import (
	"encoding/binary"
	"fmt"

	"github.com/meshgate/meshgate/codec"
)

// field is one compiled header field.
type field struct {
	name     string
	off      int
	size     int
	role     string
	hasConst bool
	konst    uint64
	kind     uint8 // what Decode and Append do with it
}

const (
	kindReserved uint8 = iota
	kindConst
	kindHeaderLen
	kindBodyLen
	kindTotalLen
	kindCmd
	kindSeq
	kindUIN
	kindFlags
	kindResult
)

var roleKind = map[string]uint8{
	RoleHeaderLen: kindHeaderLen, RoleBodyLen: kindBodyLen, RoleTotalLen: kindTotalLen,
	RoleCmd: kindCmd, RoleSeq: kindSeq, RoleUIN: kindUIN, RoleFlags: kindFlags, RoleResult: kindResult,
}

// Codec is a declarative fixed-header codec. It is immutable and safe for
// concurrent use; build it with Parse, Load, FromNode or New.
type Codec struct {
	name string
	max  int
	le   bool

	fields   []field
	consts   []field // const fields, in wire order
	decoded  []field // fields Decode copies into the frame (and header_len)
	nPre     int     // consts[:nPre] lie within the prefix
	fixed    int     // bytes of the fixed fields
	prefix   int     // bytes needed to learn the frame size
	minFrame int     // smallest valid frame

	hl, bl, tl                        int // field indexes, -1 if absent
	hlMin, hlMax, hlMult              int
	inclHeader, inclBody, inclTrailer bool

	ext   bool
	align int
	unit  int // header_len granularity on encode: lcm(align, multiple_of)

	trailer     []byte
	trailerName string

	flagWire [6]uint64 // wire bit for codec flag bit i (0 = not carried)
}

var _ codec.Codec = (*Codec)(nil)

// finish derives the sizes Decode and Append use.
func (c *Codec) finish() {
	for i := range c.fields {
		fd := &c.fields[i]
		switch {
		case fd.hasConst:
			fd.kind = kindConst
			c.consts = append(c.consts, *fd)
		case fd.role != "":
			fd.kind = roleKind[fd.role]
		}
		if fd.kind == kindHeaderLen || fd.kind == kindBodyLen || fd.kind == kindTotalLen {
			c.prefix = max(c.prefix, fd.off+fd.size)
		}
		if fd.kind == kindHeaderLen || fd.kind >= kindCmd {
			c.decoded = append(c.decoded, *fd)
		}
	}
	for _, fd := range c.consts {
		if fd.off+fd.size <= c.prefix {
			c.nPre++
		}
	}
	c.unit = 1
	if c.hl >= 0 {
		a := max(c.align, 1)
		c.unit = a * c.hlMult / gcd(a, c.hlMult)
	}
	c.minFrame = c.headerLen(0) + len(c.trailer)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// headerLen is the header size Append uses for el extension bytes.
func (c *Codec) headerLen(el int) int {
	if c.hl < 0 {
		return c.fixed
	}
	n := max(c.fixed+el, c.hlMin)
	return (n + c.unit - 1) / c.unit * c.unit
}

// Name implements codec.Codec: the description's name, or "fixed".
func (c *Codec) Name() string {
	if c.name == "" {
		return "fixed"
	}
	return c.name
}

// MaxFrameSize implements codec.Codec.
func (c *Codec) MaxFrameSize() int { return c.max }

// With returns a copy of c with another name and frame limit (0 keeps
// c's limit). The copy shares c's immutable tables.
func (c *Codec) With(name string, maxFrameSize int) *Codec {
	d := *c
	d.name = name
	if maxFrameSize > 0 {
		d.max = maxFrameSize
	}
	return &d
}

// Register makes c available from codec.New under name, each New call
// getting a copy with the limit it asks for. A taken name is an error
// (codec.ErrDuplicateCodec).
func Register(name string, c *Codec) error {
	return codec.TryRegister(name, func(max int) (codec.Codec, error) {
		if max > 0 && c.minFrame > max {
			return nil, fmt.Errorf("%w: codec %q: smallest frame %d exceeds limit %d", codec.ErrInvalidFrame, name, c.minFrame, max)
		}
		return c.With(name, max), nil
	})
}

func (c *Codec) get(b []byte, size int) uint64 {
	switch size {
	case 1:
		return uint64(b[0])
	case 2:
		if c.le {
			return uint64(binary.LittleEndian.Uint16(b))
		}
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		if c.le {
			return uint64(binary.LittleEndian.Uint32(b))
		}
		return uint64(binary.BigEndian.Uint32(b))
	default:
		if c.le {
			return binary.LittleEndian.Uint64(b)
		}
		return binary.BigEndian.Uint64(b)
	}
}

func (c *Codec) put(b []byte, size int, v uint64) {
	switch size {
	case 1:
		b[0] = byte(v)
	case 2:
		if c.le {
			binary.LittleEndian.PutUint16(b, uint16(v))
		} else {
			binary.BigEndian.PutUint16(b, uint16(v))
		}
	case 4:
		if c.le {
			binary.LittleEndian.PutUint32(b, uint32(v))
		} else {
			binary.BigEndian.PutUint32(b, uint32(v))
		}
	default:
		if c.le {
			binary.LittleEndian.PutUint64(b, v)
		} else {
			binary.BigEndian.PutUint64(b, v)
		}
	}
}

// FrameSize returns the total size of the frame at the front of buf once
// the fields that size it are present, validating them and every constant
// field present so far. ok is false when buf is too short to tell.
//
// Checks run in an order that makes the verdict independent of how much of
// the frame has arrived: constants within the size prefix (as their bytes
// arrive), then the length fields, then the remaining constants.
func (c *Codec) FrameSize(buf []byte) (size int, ok bool, err error) {
	if err := c.checkConsts(buf, c.consts[:c.nPre]); err != nil {
		return 0, false, err
	}
	if len(buf) < c.prefix {
		return 0, false, nil
	}
	size, err = c.sizeFromPrefix(buf)
	if err != nil {
		return 0, false, err
	}
	if err := c.checkConsts(buf, c.consts[c.nPre:]); err != nil {
		return 0, false, err
	}
	return size, true, nil
}

// checkConsts checks the constant fields of cs whose bytes are present.
func (c *Codec) checkConsts(buf []byte, cs []field) error {
	for i := range cs {
		fd := &cs[i]
		if fd.off+fd.size > len(buf) {
			break
		}
		if v := c.get(buf[fd.off:], fd.size); v != fd.konst {
			return &codec.FieldError{Field: fd.name, Value: v, Reason: fmt.Sprintf("want %#x", fd.konst)}
		}
	}
	return nil
}

// sizeFromPrefix validates the length fields and returns the frame size.
func (c *Codec) sizeFromPrefix(buf []byte) (int, error) {
	hl := uint64(c.fixed)
	if c.hl >= 0 {
		fd := &c.fields[c.hl]
		hl = c.get(buf[fd.off:], fd.size)
		if hl < uint64(c.hlMin) || hl > uint64(c.hlMax) || hl%uint64(c.hlMult) != 0 {
			return 0, c.headerLenError(fd.name, hl)
		}
	}
	tr := uint64(len(c.trailer))
	var body uint64
	if c.bl >= 0 {
		fd := &c.fields[c.bl]
		body = c.get(buf[fd.off:], fd.size)
	} else {
		fd := &c.fields[c.tl]
		v := c.get(buf[fd.off:], fd.size)
		var sub uint64
		if c.inclHeader {
			sub += hl
		}
		if c.inclTrailer {
			sub += tr
		}
		if v < sub {
			return 0, &codec.FieldError{Field: fd.name, Value: v, Reason: fmt.Sprintf("less than the %d header/trailer bytes it includes", sub)}
		}
		body = v - sub
	}
	max := uint64(c.max)
	if body > max {
		return 0, &codec.TooLargeError{Size: satAdd(hl+tr, body), Max: max}
	}
	total := hl + body + tr
	if total > max {
		return 0, &codec.TooLargeError{Size: total, Max: max}
	}
	return int(total), nil
}

func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}

func (c *Codec) headerLenError(name string, v uint64) error {
	reason := fmt.Sprintf("want [%d, %d]", c.hlMin, c.hlMax)
	if c.hlMult > 1 {
		reason = fmt.Sprintf("want a multiple of %d in [%d, %d]", c.hlMult, c.hlMin, c.hlMax)
	}
	return &codec.FieldError{Field: name, Value: v, Reason: reason}
}

// Decode implements codec.Codec.
func (c *Codec) Decode(buf []byte, f *codec.Frame) (n, need int, err error) {
	total, ok, err := c.FrameSize(buf)
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, c.minFrame, nil
	}
	if len(buf) < total {
		return 0, total, nil
	}
	tstart := total - len(c.trailer)
	for i, b := range c.trailer {
		if buf[tstart+i] != b {
			return 0, 0, c.trailerError(i, buf[tstart+i])
		}
	}
	hl := c.fixed
	f.Cmd, f.Seq, f.UIN, f.Flags, f.Result = 0, 0, 0, 0, 0
	for i := range c.decoded {
		fd := &c.decoded[i]
		v := c.get(buf[fd.off:], fd.size)
		switch fd.kind {
		case kindHeaderLen:
			hl = int(v)
		case kindCmd:
			f.Cmd = uint32(v)
		case kindSeq:
			f.Seq = uint32(v)
		case kindUIN:
			f.UIN = v
		case kindFlags:
			f.Flags = c.flagsFromWire(v)
		case kindResult:
			f.Result = uint16(v)
		}
	}
	f.Ext = f.Ext[:0]
	if c.ext {
		if err := codec.ParseExt(buf[c.fixed:hl], c.le, f); err != nil {
			return 0, 0, err
		}
	}
	f.Body = buf[hl:tstart:tstart]
	return total, 0, nil
}

func (c *Codec) trailerError(i int, got byte) error {
	if len(c.trailer) == 1 {
		return &codec.FieldError{Field: c.trailerName, Value: uint64(got), Reason: fmt.Sprintf("want %#02x", c.trailer[0])}
	}
	return &codec.FieldError{Field: fmt.Sprintf("%s[%d]", c.trailerName, i), Value: uint64(got), Reason: fmt.Sprintf("want %#02x", c.trailer[i])}
}

func (c *Codec) flagsFromWire(v uint64) codec.Flags {
	var fl codec.Flags
	for i, w := range c.flagWire {
		if w != 0 && v&w != 0 {
			fl |= 1 << i
		}
	}
	return fl
}

func (c *Codec) flagsToWire(fl codec.Flags) uint64 {
	var v uint64
	for i, w := range c.flagWire {
		if fl&(1<<i) != 0 {
			v |= w
		}
	}
	return v
}

// Size returns the encoded size of f and its header length, or an error
// wrapping codec.ErrInvalidFrame. Without an extensions area, f.Ext is not
// carried (and not an error).
func (c *Codec) Size(f *codec.Frame) (size, headerLen int, err error) {
	el := 0
	if c.ext {
		if el, err = codec.ExtLen(f.Ext); err != nil {
			return 0, 0, err
		}
	}
	headerLen = c.headerLen(el)
	if c.hl >= 0 && headerLen > c.hlMax {
		return 0, 0, fmt.Errorf("%w: header_len %d exceeds %d", codec.ErrInvalidFrame, headerLen, c.hlMax)
	}
	size = headerLen + len(f.Body) + len(c.trailer)
	if size > c.max {
		return 0, 0, fmt.Errorf("%w: frame is %d bytes, max %d", codec.ErrInvalidFrame, size, c.max)
	}
	return size, headerLen, nil
}

// Append implements codec.Codec. A frame value that does not fit its field
// (a cmd above 65535 in a 2-byte field, say) is an error wrapping
// codec.ErrInvalidFrame; dst is returned unchanged.
func (c *Codec) Append(dst []byte, f *codec.Frame) ([]byte, error) {
	size, hl, err := c.Size(f)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = codec.Grow(dst, size)
	b := dst[start : start+size]
	for i := range c.fields {
		fd := &c.fields[i]
		var v uint64
		switch fd.kind {
		case kindConst:
			v = fd.konst
		case kindHeaderLen:
			v = uint64(hl)
		case kindBodyLen:
			v = uint64(len(f.Body))
		case kindTotalLen:
			v = uint64(len(f.Body))
			if c.inclHeader {
				v += uint64(hl)
			}
			if c.inclTrailer {
				v += uint64(len(c.trailer))
			}
		case kindCmd:
			v = uint64(f.Cmd)
		case kindSeq:
			v = uint64(f.Seq)
		case kindUIN:
			v = f.UIN
		case kindFlags:
			v = c.flagsToWire(f.Flags)
		case kindResult:
			v = uint64(f.Result)
		}
		if fd.size < 8 && v>>(8*fd.size) != 0 {
			return dst[:start], &valueError{field: fd.name, value: v, size: fd.size}
		}
		c.put(b[fd.off:], fd.size, v)
	}
	off := c.fixed
	if c.ext {
		for i := range f.Ext {
			e := &f.Ext[i]
			c.put(b[off:], 2, uint64(e.Key))
			c.put(b[off+2:], 2, uint64(len(e.Value)))
			off += 4 + copy(b[off+4:], e.Value)
		}
	}
	clear(b[off:hl])
	copy(b[hl:], f.Body)
	copy(b[size-len(c.trailer):], c.trailer)
	return dst, nil
}

// valueError is a frame value too wide for its field.
type valueError struct {
	field string
	value uint64
	size  int
}

func (e *valueError) Error() string {
	return fmt.Sprintf("%v: %s %d does not fit %d bytes", codec.ErrInvalidFrame, e.field, e.value, e.size)
}

func (e *valueError) Unwrap() error { return codec.ErrInvalidFrame }
