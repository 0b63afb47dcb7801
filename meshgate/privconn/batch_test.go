package privconn_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// countingWriter records each Write.
type countingWriter struct {
	writes [][]byte
	err    error
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// TestFrameWriterBatch: frames written for a batch are held and leave in
// one write when the batch is flushed; without a batch a frame is written
// at once; a flush's write error reaches OnError.
func TestFrameWriterBatch(t *testing.T) {
	cw := &countingWriter{}
	fw := privconn.NewFrameWriter(cw, mgpc)
	var b connio.Batch
	for i := range 3 {
		if err := fw.WriteFrameIn(&codec.Frame{Cmd: 1, Seq: uint32(i + 1), Body: []byte("x")}, &b); err != nil {
			t.Fatal(err)
		}
	}
	if len(cw.writes) != 0 || !b.Pending() {
		t.Fatalf("before the flush: %d writes, pending %v; want 0, true", len(cw.writes), b.Pending())
	}
	b.Flush()
	if len(cw.writes) != 1 || b.Pending() {
		t.Fatalf("after the flush: %d writes, pending %v; want 1, false", len(cw.writes), b.Pending())
	}
	r := codec.NewReader(bytes.NewReader(cw.writes[0]), mgpc, 64)
	var f codec.Frame
	for i := range 3 {
		if err := r.ReadFrame(&f); err != nil || f.Seq != uint32(i+1) {
			t.Fatalf("frame %d: seq %d, %v", i, f.Seq, err)
		}
	}
	if err := fw.WriteFrame(&codec.Frame{Cmd: 1, Seq: 9}); err != nil || len(cw.writes) != 2 {
		t.Fatalf("unbatched frame: %v, %d writes; want nil, 2", err, len(cw.writes))
	}

	// A batch lets the writer hold only so much: a large frame goes at once.
	if err := fw.WriteFrameIn(&codec.Frame{Cmd: 1, Seq: 10, Body: make([]byte, 100<<10)}, &b); err != nil || len(cw.writes) != 3 {
		t.Fatalf("large frame: %v, %d writes; want nil, 3", err, len(cw.writes))
	}

	var reported atomic.Value
	fw.OnError = func(err error) { reported.Store(err) }
	cw.err = errors.New("boom")
	if err := fw.WriteFrameIn(&codec.Frame{Cmd: 1, Seq: 11}, &b); err != nil {
		t.Fatalf("held frame: %v", err)
	}
	b.Flush()
	if err, _ := reported.Load().(error); err == nil || err.Error() != "boom" {
		t.Fatalf("OnError got %v, want boom", err)
	}
	if err := fw.WriteFrame(&codec.Frame{Cmd: 1, Seq: 12}); err == nil {
		t.Fatal("write after a failed flush succeeded; the error must stick")
	}
}

// failingConn is a real TCP connection whose writes fail once broken.
type failingConn struct {
	net.Conn
	broken atomic.Bool
}

func (c *failingConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, errors.New("write: broken pipe")
	}
	return c.Conn.Write(p)
}

// TestStartBatchedRequest: a request started with a Handle's Batch is
// sent when the batch is flushed and answered; when the flush's write
// fails, the connection fails and the request completes with ErrClosed
// instead of waiting for its deadline.
func TestStartBatchedRequest(t *testing.T) {
	srv := startLegacy(t, legacy.ServerOptions{})
	nc, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fc := &failingConn{Conn: nc}
	cn := privconn.New(fc, mgpc, privconn.Options{})
	defer cn.Close()

	start := func() (*connio.Batch, chan error) {
		b := &connio.Batch{}
		h := &privconn.Handle{Batch: b}
		ch := make(chan error, 1)
		err := cn.StartHandle(&codec.Frame{Cmd: legacy.CmdEcho, Body: []byte("hi")}, time.Now().Add(10*time.Second), h, func(resp *codec.Frame, err error) {
			if err == nil && string(resp.Body) != "hi" {
				err = errors.New("reply body " + string(resp.Body))
			}
			ch <- err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !b.Pending() {
			t.Fatal("the request was written at once; want it held for the batch")
		}
		return b, ch
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wait := func(ch chan error) error {
		select {
		case err := <-ch:
			return err
		case <-ctx.Done():
			t.Fatal("no completion")
			return nil
		}
	}

	b, ch := start()
	b.Flush()
	if err := wait(ch); err != nil {
		t.Fatalf("batched request: %v", err)
	}

	b, ch = start()
	fc.broken.Store(true)
	b.Flush()
	if err := wait(ch); !errors.Is(err, privconn.ErrClosed) {
		t.Fatalf("after a failed flush: %v, want ErrClosed", err)
	}
}
