package codec

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// lenCodec is a minimal codec for Reader tests: a u32 big-endian length of
// the whole frame, then the body.
type lenCodec struct{ max int }

func (c lenCodec) Name() string      { return "len" }
func (c lenCodec) MaxFrameSize() int { return c.max }
func (c lenCodec) Decode(buf []byte, f *Frame) (int, int, error) {
	if len(buf) < 4 {
		return 0, 4, nil
	}
	n := int(binary.BigEndian.Uint32(buf))
	if n < 4 {
		return 0, 0, &FieldError{Field: "len", Value: uint64(n), Reason: "want >= 4"}
	}
	if n > c.max {
		return 0, 0, &TooLargeError{Size: uint64(n), Max: uint64(c.max)}
	}
	if len(buf) < n {
		return 0, n, nil
	}
	f.Body = buf[4:n]
	return n, 0, nil
}
func (c lenCodec) Append(dst []byte, f *Frame) ([]byte, error) {
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+len(f.Body)))
	return append(dst, f.Body...), nil
}

func lenFrames(bodies ...string) string {
	var b []byte
	for _, s := range bodies {
		b, _ = lenCodec{}.Append(b, &Frame{Body: []byte(s)})
	}
	return string(b)
}

func TestReaderFramesAndEOF(t *testing.T) {
	c := lenCodec{max: 1 << 20}
	bodies := []string{"", "a", strings.Repeat("b", 200), "cc", strings.Repeat("d", 1000)}
	in := lenFrames(bodies...)
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
		iotest.DataErrReader, // data and io.EOF together
	} {
		r := NewReader(wrap(strings.NewReader(in)), c, 0)
		var f Frame
		for i, want := range bodies {
			if err := r.ReadFrame(&f); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if string(f.Body) != want {
				t.Fatalf("frame %d: %q", i, f.Body)
			}
		}
		if err := r.ReadFrame(&f); err != io.EOF {
			t.Fatalf("at boundary: %v, want io.EOF", err)
		}
		if r.Buffered() != 0 {
			t.Fatalf("buffered %d", r.Buffered())
		}
	}
}

func TestReaderUnexpectedEOF(t *testing.T) {
	in := lenFrames("abc", "defgh")
	for cut := len(in) - 8; cut < len(in); cut++ {
		r := NewReader(iotest.OneByteReader(strings.NewReader(in[:cut])), lenCodec{max: 100}, 0)
		var f Frame
		if err := r.ReadFrame(&f); err != nil {
			t.Fatal(err)
		}
		if err := r.ReadFrame(&f); err != io.ErrUnexpectedEOF {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
}

func TestReaderPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(iotest.ErrReader(boom), lenCodec{max: 100}, 0)
	if err := r.ReadFrame(&Frame{}); err != boom {
		t.Fatalf("read error: %v", err)
	}
	r = NewReader(strings.NewReader("\x00\x00\x00\x01"), lenCodec{max: 100}, 0)
	var fe *FieldError
	if err := r.ReadFrame(&Frame{}); !errors.As(err, &fe) || fe.Field != "len" {
		t.Fatalf("malformed: %v", err)
	}
}

// TestReaderGrowthBounded checks the buffer grows on demand to fit a frame
// of exactly the maximum size and never beyond the maximum.
func TestReaderGrowthBounded(t *testing.T) {
	for _, max := range []int{100, 1000, 4097, 65536 + 3} {
		c := lenCodec{max: max}
		in := lenFrames(strings.Repeat("x", max-4), "y", strings.Repeat("z", max-4))
		r := NewReader(strings.NewReader(in), c, 64)
		var f Frame
		for i := 0; i < 3; i++ {
			if err := r.ReadFrame(&f); err != nil {
				t.Fatalf("max %d frame %d: %v", max, i, err)
			}
			if len(r.buf) > max && len(r.buf) > 64 {
				t.Fatalf("max %d: buffer grew to %d", max, len(r.buf))
			}
		}
		if len(f.Body) != max-4 {
			t.Fatalf("max %d: body %d", max, len(f.Body))
		}
	}
}

// needyCodec reports a need above its own maximum without an error; the
// Reader must refuse to grow for it.
type needyCodec struct{ lenCodec }

func (needyCodec) Decode(buf []byte, f *Frame) (int, int, error) { return 0, 1 << 30, nil }

func TestReaderRefusesNeedOverMax(t *testing.T) {
	r := NewReader(strings.NewReader("abcdef"), needyCodec{lenCodec{max: 100}}, 0)
	if err := r.ReadFrame(&Frame{}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err=%v", err)
	}
	if len(r.buf) > 100 {
		t.Fatalf("buffer %d", len(r.buf))
	}
}

func TestReaderInitialSizeClamped(t *testing.T) {
	if r := NewReader(strings.NewReader(""), lenCodec{max: 1000}, 1<<20); len(r.buf) != 1000 {
		t.Fatalf("initial buffer %d, want the 1000-byte maximum", len(r.buf))
	}
	if r := NewReader(strings.NewReader(""), lenCodec{max: 1000}, 10); len(r.buf) != 64 {
		t.Fatalf("initial buffer %d, want 64", len(r.buf))
	}
}
