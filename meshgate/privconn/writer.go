package privconn

import (
	"io"
	"sync"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
)

// FrameWriter encodes frames onto a stream with flush coalescing: callers
// append their frame to a shared buffer under a mutex; the first caller to
// find no flush in progress becomes the flusher and writes the buffer (and
// whatever other callers appended meanwhile) until it is empty. No extra
// goroutine sits on the write path, and concurrent writers share syscalls.
//
// It is safe for concurrent use. A write error is sticky.
//
// Two bounds keep a peer that stops reading from holding callers and
// memory: with SetTimeout, each socket write that makes no progress for
// the timeout fails (a sticky error wrapping os.ErrDeadlineExceeded), and
// at most MaxBacklog bytes queue behind a write in progress: a frame that
// finds the queue fuller is refused with ErrWriteBacklog and not written.
type FrameWriter struct {
	w io.Writer
	c codec.Codec

	// timeout bounds each socket write (0: none); dl is the write deadline
	// last armed, touched only by the flusher.
	timeout time.Duration
	dl      time.Time

	mu       sync.Mutex
	buf      []byte // frames waiting to be written
	spare    []byte // the buffer the flusher returns
	flushing bool
	err      error

	// OnError, when set before the first write, is called once (without
	// the lock) with the error of a write that a batch flush made: its
	// frames had been accepted, so the owner must fail what waits on them.
	OnError func(error)
}

// NewFrameWriter returns a FrameWriter over w.
func NewFrameWriter(w io.Writer, c codec.Codec) *FrameWriter {
	return &FrameWriter{w: w, c: c, buf: make([]byte, 0, 4096), spare: make([]byte, 0, 4096)}
}

// maxRetained bounds the buffers kept between flushes.
const maxRetained = 256 << 10

// MaxBacklog is how many encoded bytes may wait behind a socket write in
// progress before WriteFrame refuses further frames (ErrWriteBacklog).
const MaxBacklog = 4 << 20

// deadliner is a writer whose writes can be bounded (a net.Conn).
type deadliner interface{ SetWriteDeadline(time.Time) error }

// SetTimeout bounds each socket write: a write that has made no progress
// for d fails (the writer's sticky error). It applies when the writer is a
// net.Conn (anything with SetWriteDeadline); d <= 0 means no bound. Call it
// before the first WriteFrame.
func (fw *FrameWriter) SetTimeout(d time.Duration) {
	if _, ok := fw.w.(deadliner); ok && d > 0 {
		fw.timeout = d
	}
}

// armWrite sets the write deadline for a flush, timeout from now; like the
// listeners' send timeout it keeps a deadline that lies between T and
// T + T/8 from now, so a busy connection re-arms about once every T/8
// rather than once per write. Called by the flusher only.
func (fw *FrameWriter) armWrite() {
	t := fw.timeout
	if t <= 0 {
		return
	}
	now := time.Now()
	if dl := now.Add(t); fw.dl.Before(dl) || fw.dl.After(dl.Add(t/8)) {
		fw.dl = dl.Add(t / 8)
		_ = fw.w.(deadliner).SetWriteDeadline(fw.dl)
	}
}

// WriteFrame encodes f and makes sure it is written (by this caller or by
// the flusher currently running). Encoding errors (codec.ErrInvalidFrame)
// are returned without affecting the stream.
func (fw *FrameWriter) WriteFrame(f *codec.Frame) error {
	return fw.WriteFrameIn(f, nil)
}

// maxHeld bounds what a batch lets a FrameWriter hold back: past it the
// caller writes at once.
const maxHeld = 64 << 10

// WriteFrameIn is WriteFrame for a caller that reads on behalf of batch b
// (nil: write now): the frame is appended and, unless a flusher is active
// or maxHeld is reached, written when b is flushed (connio.Batch). A write
// error is then reported to OnError, not to this caller.
func (fw *FrameWriter) WriteFrameIn(f *codec.Frame, b *connio.Batch) error {
	fw.mu.Lock()
	if fw.err != nil {
		err := fw.err
		fw.mu.Unlock()
		return err
	}
	if fw.flushing && len(fw.buf) >= MaxBacklog {
		// The peer is not taking bytes as fast as they come: refuse
		// rather than queue without bound (the frame is not sent).
		fw.mu.Unlock()
		return ErrWriteBacklog
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
	if b != nil && len(fw.buf) < maxHeld {
		fw.mu.Unlock()
		b.Defer(fw)
		return nil
	}
	return fw.flushLocked()
}

// FlushBatch writes what batches made the writer hold (connio.Flusher).
func (fw *FrameWriter) FlushBatch() {
	fw.mu.Lock()
	if fw.flushing || len(fw.buf) == 0 || fw.err != nil {
		fw.mu.Unlock()
		return
	}
	if err := fw.flushLocked(); err != nil && fw.OnError != nil {
		fw.OnError(err)
	}
}

// flushLocked writes the buffer (and what others append meanwhile) until
// it is empty; mu held on entry, released on return.
func (fw *FrameWriter) flushLocked() error {
	var err error
	fw.flushing = true
	for len(fw.buf) > 0 && fw.err == nil {
		out := fw.buf
		fw.buf = fw.spare[:0]
		fw.mu.Unlock()
		fw.armWrite()
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
