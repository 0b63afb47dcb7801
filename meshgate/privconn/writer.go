package privconn

import (
	"io"
	"sync"

	"github.com/meshgate/meshgate/codec"
)

// FrameWriter encodes frames onto a stream with flush coalescing: callers
// append their frame to a shared buffer under a mutex; the first caller to
// find no flush in progress becomes the flusher and writes the buffer (and
// whatever other callers appended meanwhile) until it is empty. No extra
// goroutine sits on the write path, and concurrent writers share syscalls.
//
// It is safe for concurrent use. A write error is sticky.
type FrameWriter struct {
	w io.Writer
	c codec.Codec

	mu       sync.Mutex
	buf      []byte // frames waiting to be written
	spare    []byte // the buffer the flusher returns
	flushing bool
	err      error
}

// NewFrameWriter returns a FrameWriter over w.
func NewFrameWriter(w io.Writer, c codec.Codec) *FrameWriter {
	return &FrameWriter{w: w, c: c, buf: make([]byte, 0, 4096), spare: make([]byte, 0, 4096)}
}

// maxRetained bounds the buffers kept between flushes.
const maxRetained = 256 << 10

// WriteFrame encodes f and makes sure it is written (by this caller or by
// the flusher currently running). Encoding errors (codec.ErrInvalidFrame)
// are returned without affecting the stream.
func (fw *FrameWriter) WriteFrame(f *codec.Frame) error {
	fw.mu.Lock()
	if fw.err != nil {
		err := fw.err
		fw.mu.Unlock()
		return err
	}
	var err error
	fw.buf, err = fw.c.Append(fw.buf, f)
	if err != nil {
		fw.mu.Unlock()
		return err
	}
	if fw.flushing {
		// The active flusher will write it.
		fw.mu.Unlock()
		return nil
	}
	fw.flushing = true
	for len(fw.buf) > 0 && fw.err == nil {
		out := fw.buf
		fw.buf = fw.spare[:0]
		fw.mu.Unlock()
		_, werr := fw.w.Write(out)
		fw.mu.Lock()
		if werr != nil {
			fw.err = werr
		}
		if cap(out) <= maxRetained {
			fw.spare = out[:0]
		} else {
			fw.spare = make([]byte, 0, 4096)
		}
	}
	fw.flushing = false
	err = fw.err
	fw.mu.Unlock()
	return err
}
