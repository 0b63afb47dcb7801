package codec

import (
	"errors"
	"io"
)

// Reader reads frames from a byte stream with one reusable buffer. It is
// owned by a single goroutine (the connection's read loop).
//
// A Frame returned by ReadFrame aliases the Reader's buffer and is valid
// until the next call to ReadFrame.
type Reader struct {
	r     io.Reader
	c     Codec
	buf   []byte
	start int // first unconsumed byte
	end   int // one past the last byte read
	last  []byte
}

// NewReader returns a Reader with an initial buffer of size bytes (grown up
// to the codec's MaxFrameSize on demand, never beyond).
func NewReader(r io.Reader, c Codec, size int) *Reader {
	if size < 64 {
		size = 64
	}
	if m := c.MaxFrameSize(); size > m && m >= 64 {
		size = m // the buffer never needs to exceed one frame
	}
	return &Reader{r: r, c: c, buf: make([]byte, size)}
}

// Buffered returns how many bytes are read but not yet decoded.
func (r *Reader) Buffered() int { return r.end - r.start }

// ReadFrame decodes the next frame into f, reading as needed. It returns
// io.EOF at a clean frame boundary, io.ErrUnexpectedEOF when the stream ends
// mid-frame, and the codec's error for malformed input.
func (r *Reader) ReadFrame(f *Frame) error {
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

// ensure makes room for need bytes from r.start.
func (r *Reader) ensure(need int) {
	if need <= len(r.buf)-r.start {
		return
	}
	have := r.end - r.start
	if need <= len(r.buf) {
		copy(r.buf, r.buf[r.start:r.end])
	} else {
		size := 2 * len(r.buf)
		for size < need {
			size *= 2
		}
		if max := r.c.MaxFrameSize(); size > max {
			size = max
		}
		nb := make([]byte, size)
		copy(nb, r.buf[r.start:r.end])
		r.buf = nb
	}
	r.start, r.end = 0, have
}
