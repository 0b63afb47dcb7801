package codec

import (
	"errors"
	"io"
	"math/bits"
	"sync"
)

// Reader reads frames from a byte stream with one reusable buffer. It is
// owned by a single goroutine (the connection's read loop).
//
// A Frame returned by ReadFrame aliases the Reader's buffer and is valid
// until the next call to ReadFrame.
//
// Memory follows the bytes that actually arrive, not what a header
// announces: the buffer starts at the size given to NewReader (its base)
// and doubles only when it is full and the frame still needs more, so a
// peer that announces a 4 MiB body and sends 32 bytes costs the base size.
// A buffer grown past the base comes from a shared pool (by power-of-two
// size) and goes back to it as soon as the large frame is consumed and the
// bytes still buffered fit the base: an idle connection holds only its
// base buffer, and back-to-back large frames reuse pooled buffers.
type Reader struct {
	r     io.Reader
	c     Codec
	buf   []byte
	base  []byte  // the connection's own small buffer
	big   *[]byte // the pooled buffer buf is in, when grown past base
	start int     // first unconsumed byte
	end   int     // one past the last byte read
	last  []byte
}

// NewReader returns a Reader with an initial buffer of size bytes (grown up
// to the codec's MaxFrameSize as bytes arrive, never beyond).
func NewReader(r io.Reader, c Codec, size int) *Reader {
	if size < 64 {
		size = 64
	}
	if m := c.MaxFrameSize(); size > m && m >= 64 {
		size = m // the buffer never needs to exceed one frame
	}
	b := make([]byte, size)
	return &Reader{r: r, c: c, buf: b, base: b}
}

// Cap is the capacity of the current buffer in bytes (tests and
// introspection).
func (r *Reader) Cap() int { return cap(r.buf) }

// Buffered returns how many bytes are read but not yet decoded.
func (r *Reader) Buffered() int { return r.end - r.start }

// ReadFrame decodes the next frame into f, reading as needed. When it
// gives a large buffer back it clears f's body and extension values first
// (they may view that buffer; pass the same Frame each call). It returns
// io.EOF at a clean frame boundary, io.ErrUnexpectedEOF when the stream ends
// mid-frame, and the codec's error for malformed input.
func (r *Reader) ReadFrame(f *Frame) error {
	// The previous frame (which may alias a large buffer) is no longer
	// valid: give a large buffer back when what is left fits the base.
	if len(r.buf) > len(r.base) && r.end-r.start <= len(r.base) {
		n := copy(r.base, r.buf[r.start:r.end])
		putBuf(r.big)
		r.buf, r.big, r.start, r.end, r.last = r.base, nil, 0, n, nil
		// f usually is the caller's frame from the last call: drop its
		// views of the large buffer so an idle connection does not pin it.
		f.Body = nil
		clear(f.Ext[:cap(f.Ext)])
	}
	for {
		if r.end > r.start {
			n, need, err := r.c.Decode(r.buf[r.start:r.end], f)
			if err != nil {
				return err
			}
			if n > 0 {
				r.last = r.buf[r.start : r.start+n : r.start+n]
				r.start += n
				if r.start == r.end {
					r.start, r.end = 0, 0
				}
				return nil
			}
			if need > r.c.MaxFrameSize() {
				return &TooLargeError{Size: uint64(need), Max: uint64(r.c.MaxFrameSize())}
			}
			r.ensure(need)
		} else {
			r.start, r.end = 0, 0
		}
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		// With m > 0 the bytes are decoded first; the error (EOF or not)
		// comes back from the next Read.
		if err != nil && m == 0 {
			if errors.Is(err, io.EOF) && r.end > r.start {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// Last returns the raw bytes of the frame the last successful ReadFrame
// decoded (e.g. to verify a MAC over the wire bytes). Like the Frame, it is
// valid until the next call to ReadFrame.
func (r *Reader) Last() []byte { return r.last }

// ensure makes room to read towards need bytes from r.start: it moves the
// unconsumed bytes to the front and, only when the buffer is then full,
// doubles it (capped at need). Growth thus tracks the bytes received.
func (r *Reader) ensure(need int) {
	if need <= len(r.buf)-r.start {
		return
	}
	have := r.end - r.start
	if r.start > 0 {
		copy(r.buf, r.buf[r.start:r.end])
		r.start, r.end = 0, have
	}
	if r.end < len(r.buf) {
		return // room for more bytes; grow when they have arrived
	}
	size := min(2*len(r.buf), need)
	p := getBuf(size)
	nb := (*p)[:size]
	copy(nb, r.buf[:r.end])
	if r.big != nil {
		putBuf(r.big)
	}
	r.buf, r.big = nb, p
}

// Large buffers are pooled by power-of-two capacity class, so a buffer is
// shared by every connection reading a large frame at some point instead of
// pinned by each one.
var bufPools [48]sync.Pool

func sizeClass(n int) int { return bits.Len(uint(n - 1)) }

// getBuf returns a pooled buffer of capacity 1<<sizeClass(n) >= n.
func getBuf(n int) *[]byte {
	c := sizeClass(n)
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 1<<c)
	return &b
}

func putBuf(p *[]byte) {
	bufPools[sizeClass(cap(*p))].Put(p)
}
