package connio

import "io"

// Flusher is a writer that can hold frames back for a Batch: it writes
// what it holds when FlushBatch is called (or earlier, when another
// writer of the same connection writes first).
type Flusher interface {
	FlushBatch()
}

// Batch is the set of writers a reading goroutine has appended frames to
// without writing them: the end-of-read-event flush of an event loop. A
// connection's reader that turns each frame it reads into a frame for
// another connection (a request for an upstream, a reply for a client)
// appends instead of writing while it still has bytes it has read and
// not yet processed, and flushes the batch before it reads the socket
// again. Under load one read brings many frames, and each upstream or
// client connection then costs one write for all of them instead of one
// per frame; at low load a read brings one frame and the flush follows it
// at once, so nothing waits.
//
// A Batch belongs to one goroutine (its reader); it is not safe for
// concurrent use. A writer handed a Batch must write the frames later only
// through FlushBatch or a write of its own (never hold them otherwise), so
// frames wait at most until the reader has processed what it read.
type Batch struct {
	fs []Flusher
}

// Defer records that f holds frames for this batch (once per writer).
func (b *Batch) Defer(f Flusher) {
	for _, g := range b.fs {
		if g == f {
			return
		}
	}
	b.fs = append(b.fs, f)
}

// Pending reports whether a writer holds frames for the batch (false for
// a nil Batch).
func (b *Batch) Pending() bool { return b != nil && len(b.fs) > 0 }

// Flush asks every writer that holds frames for the batch to write them.
func (b *Batch) Flush() {
	for i, f := range b.fs {
		b.fs[i] = nil
		f.FlushBatch()
	}
	b.fs = b.fs[:0]
}

// FlushingReader is the source of a reader that owns batch B: it flushes
// B before every read of R, so frames wait only while bytes already read
// are processed.
type FlushingReader struct {
	R io.Reader
	B *Batch
}

func (r FlushingReader) Read(p []byte) (int, error) {
	if len(r.B.fs) > 0 {
		r.B.Flush()
	}
	return r.R.Read(p)
}
