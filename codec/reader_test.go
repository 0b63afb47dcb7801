package codec

import (
	"encoding/binary"
	"errors"
	"io"
	"runtime"
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

// stallReader yields its data then fails every further Read with errStall,
// like a peer that sent a header and went quiet (a read deadline firing).
type stallReader struct{ data []byte }

var errStall = errors.New("stalled")

func (s *stallReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, errStall
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}

// A header announcing 4 MiB followed by nothing must cost about the bytes
// received, not the announced size.
func TestReaderAnnouncedSizeNotAllocated(t *testing.T) {
	c := lenCodec{max: 8 << 20}
	hdr := make([]byte, 32)
	binary.BigEndian.PutUint32(hdr, 4<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := NewReader(&stallReader{data: hdr}, c, 4096)
	var f Frame
	if err := r.ReadFrame(&f); !errors.Is(err, errStall) {
		t.Fatalf("ReadFrame: %v, want the stall", err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Fatalf("allocated %d bytes for a 32-byte header announcing 4 MiB; want <= 64 KiB", got)
	}
	if r.Cap() > 4096 {
		t.Fatalf("buffer grew to %d before any body byte arrived", r.Cap())
	}
}

// Growth is geometric and bounded by twice the bytes actually received.
func TestReaderGrowthTracksArrivedBytes(t *testing.T) {
	c := lenCodec{max: 8 << 20}
	in := make([]byte, 100<<10) // 100 KiB of a 4 MiB frame
	binary.BigEndian.PutUint32(in, 4<<20)
	r := NewReader(&stallReader{data: in}, c, 4096)
	var f Frame
	if err := r.ReadFrame(&f); !errors.Is(err, errStall) {
		t.Fatalf("ReadFrame: %v", err)
	}
	if r.Cap() < len(in) || r.Cap() > 2*len(in) {
		t.Fatalf("buffer %d after %d bytes received; want within [received, 2×received]", r.Cap(), len(in))
	}
}

// After a large frame is consumed the buffer returns to its base size, so
// an idle connection does not keep the largest frame it ever saw.
func TestReaderShrinksAfterLargeFrame(t *testing.T) {
	c := lenCodec{max: 8 << 20}
	in := lenFrames(strings.Repeat("x", 1<<20), "small")
	r := NewReader(&stallReader{data: []byte(in)}, c, 4096)
	var f Frame
	if err := r.ReadFrame(&f); err != nil || len(f.Body) != 1<<20 {
		t.Fatalf("large frame: %v, %d bytes", err, len(f.Body))
	}
	if err := r.ReadFrame(&f); err != nil || string(f.Body) != "small" {
		t.Fatalf("small frame after large: %v %q", err, f.Body)
	}
	if r.Cap() != 4096 {
		t.Fatalf("buffer %d after the large frame was consumed; want the 4096 base", r.Cap())
	}
	if err := r.ReadFrame(&f); !errors.Is(err, errStall) {
		t.Fatalf("idle: %v", err)
	}
	if r.Cap() != 4096 {
		t.Fatalf("idle buffer %d; want 4096", r.Cap())
	}
}

// Small frames in steady state allocate nothing.
func TestReaderSmallFramesZeroAlloc(t *testing.T) {
	c := lenCodec{max: 1 << 20}
	frame := lenFrames(strings.Repeat("y", 100))
	src := &loopReader{data: []byte(frame)}
	r := NewReader(src, c, 4096)
	var f Frame
	allocs := testing.AllocsPerRun(1000, func() {
		if err := r.ReadFrame(&f); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs per small frame, want 0", allocs)
	}
}

// loopReader repeats data forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func BenchmarkReaderSmallFrames(b *testing.B) {
	c := lenCodec{max: 1 << 20}
	r := NewReader(&loopReader{data: []byte(lenFrames(strings.Repeat("y", 100)))}, c, 4096)
	var f Frame
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadFrame(&f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReaderLargeFrames(b *testing.B) {
	c := lenCodec{max: 8 << 20}
	r := NewReader(&loopReader{data: []byte(lenFrames(strings.Repeat("z", 1<<20)))}, c, 4096)
	var f Frame
	b.ReportAllocs()
	b.SetBytes(1 << 20)
	for b.Loop() {
		if err := r.ReadFrame(&f); err != nil {
			b.Fatal(err)
		}
	}
}
