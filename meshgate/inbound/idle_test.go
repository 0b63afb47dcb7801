//go:build linux

package inbound

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
)

// Idle plain TCP connections hold no read buffer: after a request each
// gives its frame reader back, and every one of them is served again when
// traffic resumes — also a frame that arrives one byte per write, and a
// frame whose first byte arrives long before the rest. An idle connection
// is still closed by the idle timeout (reason idle_timeout), and one that
// stops mid-frame by the read timeout.
func TestIdleConnsHoldNoReader(t *testing.T) {
	e := newEnv(t, envOpts{lim: Limits{IdleTimeout: 3 * time.Second, ReadTimeout: time.Second}})
	const n = 100
	cls := make([]*client, n)
	for i := range cls {
		cls[i] = e.dial()
		if r, ok := cls[i].call(codecFrame(cmdEcho, 0, "first")); !ok || string(r.Body) != "first" {
			t.Fatalf("conn %d: first request: ok=%v %+v", i, ok, r)
		}
	}
	testkit.Within(t, 5*time.Second, "every idle connection to give its reader back", func() bool { return e.srv.held.Load() == 0 })

	// Traffic on each again: all served.
	chs := make([]chan codec.Frame, n)
	for i, cl := range cls {
		chs[i] = cl.start(codecFrame(cmdEcho, 0, "again"))
	}
	for i, ch := range chs {
		if r, ok := wait(t, ch); !ok || string(r.Body) != "again" {
			t.Fatalf("conn %d: second request: ok=%v %+v", i, ok, r)
		}
	}
	testkit.Within(t, 5*time.Second, "the readers to be given back again", func() bool { return e.srv.held.Load() == 0 })

	// One byte per write on an idle connection.
	cl := cls[0]
	f := codec.Frame{Cmd: cmdEcho, Seq: 4242, Body: []byte("byte by byte")}
	b, _ := e.codec.Append(nil, &f)
	ch := cl.expect(f.Seq)
	for i := range b {
		cl.write(b[i : i+1])
	}
	if r, ok := wait(t, ch); !ok || string(r.Body) != "byte by byte" {
		t.Fatalf("byte-wise frame: ok=%v %+v", ok, r)
	}

	// The first byte, then (once the connection holds a reader for it) the
	// rest: one frame.
	f.Seq, f.Body = 4243, []byte("split")
	b, _ = e.codec.Append(nil, &f)
	ch = cl.expect(f.Seq)
	cl.write(b[:1])
	testkit.Within(t, 5*time.Second, "the connection to take a reader for its first byte", func() bool { return e.srv.held.Load() == 1 })
	cl.write(b[1:])
	if r, ok := wait(t, ch); !ok || string(r.Body) != "split" {
		t.Fatalf("split frame: ok=%v %+v", ok, r)
	}
	testkit.Within(t, 5*time.Second, "the reader to be given back", func() bool { return e.srv.held.Load() == 0 })

	// Idle timeout: a served connection left alone is closed, counted as
	// idle_timeout; a connection stopping mid-frame by the read timeout.
	stalled := cls[1]
	stalled.write(b[:5])
	for _, c := range []*client{cls[0], stalled} {
		if err := c.waitClosed(); !isEOF(err) {
			t.Fatalf("close: %v", err)
		}
	}
	if v := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("priv", "idle_timeout")); v < 1 {
		t.Fatalf("idle_timeout counted %v times, want >= 1", v)
	}
	if v := testutil.ToFloat64(e.metrics.Malformed.WithLabelValues("priv", "read_timeout")); v != 1 {
		t.Fatalf("read_timeout counted %v times, want 1", v)
	}
	testkit.Within(t, 5*time.Second, "closed connections to release their readers", func() bool { return e.srv.held.Load() == 0 })
}
