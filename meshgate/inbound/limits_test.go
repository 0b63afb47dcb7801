package inbound

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/connlimit"
	"github.com/meshgate/meshgate/meshgate/mapping"
)

func rejectedCount(t *testing.T, e *env, reason string) float64 {
	t.Helper()
	cv, err := connlimit.NewRejected(e.metrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.ToFloat64(cv.With(prometheus.Labels{"listener": "priv", "reason": reason}))
}

// Connections past limits.max_connections are closed at once and counted;
// a slot freed by a closing connection is usable again.
func TestMaxConnectionsRefused(t *testing.T) {
	e := newEnv(t, envOpts{maxConns: 3})
	var cls []*client
	for range 3 {
		cl := e.dial()
		if r, ok := cl.call(codec.Frame{Flags: codec.FlagHeartbeat}); !ok || r.Flags&codec.FlagHeartbeat == 0 {
			t.Fatal("heartbeat not answered within the cap")
		}
		cls = append(cls, cl)
	}
	for i := range 2 {
		nc, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
			t.Fatalf("connection %d past the cap: read %v, want it closed by the server", 4+i, err)
		}
		nc.Close()
	}
	if n := rejectedCount(t, e, connlimit.ReasonMaxConnections); n != 2 {
		t.Fatalf("meshgate_connections_rejected_total{reason=max_connections} = %v, want 2", n)
	}
	if n := e.srv.Conns(); n != 3 {
		t.Fatalf("%d connections open, want 3", n)
	}
	// Free a slot: a new connection is served again.
	cls[0].nc.Close()
	<-cls[0].done
	testkit.Within(t, 5*time.Second, "the closed connection to be released", func() bool { return e.srv.Conns() == 2 })
	if _, ok := e.dial().call(codec.Frame{Flags: codec.FlagHeartbeat}); !ok {
		t.Fatal("no service after a slot was freed")
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// dialAll opens n client connections, each answered once (so the server
// has accepted it), before any measurement.
func dialAll(e *env, n int) []*client {
	var cls []*client
	for range n {
		cl := e.dial()
		if _, ok := cl.call(codec.Frame{Flags: codec.FlagHeartbeat}); !ok {
			e.t.Fatal("heartbeat not answered")
		}
		cls = append(cls, cl)
	}
	return cls
}

// A header announcing a 4 MiB body costs the connection no more than the
// bytes it actually sent (the old reader allocated the announced size at
// once: 20 such connections held 80 MiB).
func TestAnnouncedSizeNotAllocated(t *testing.T) {
	e := newEnv(t, envOpts{})
	big, err := e.codec.Append(nil, &codec.Frame{Cmd: 9999, Seq: 7, Body: make([]byte, 4<<20-4096)})
	if err != nil {
		t.Fatal(err)
	}
	const conns = 20
	cls := dialAll(e, conns)
	before := testkit.HeapInuse()
	for _, cl := range cls {
		ch := cl.start(codec.Frame{Seq: 1, Flags: codec.FlagHeartbeat})
		cl.write(big[:32]) // the header, then silence
		if _, ok := wait(t, ch); !ok {
			t.Fatal("heartbeat not answered")
		}
	}
	testkit.Within(t, 5*time.Second, "connections", func() bool { return e.srv.Conns() == conns })
	held := int64(testkit.HeapInuse()) - int64(before)
	t.Logf("%d connections with a 4 MiB announcement: %+d KiB", conns, held>>10)
	if held > 8<<20 {
		t.Fatalf("%d half-sent 4 MiB frames hold %d MiB, want <= 8 MiB", conns, held>>20)
	}
}

// After a large frame the connection's read buffer goes back to its small
// default: idle connections do not keep the largest frame they saw.
func TestLargeFrameBufferReleasedWhenIdle(t *testing.T) {
	e := newEnv(t, envOpts{})
	const conns = 20
	body := bytes.Repeat([]byte("b"), 1<<20)
	cls := dialAll(e, conns)
	before := testkit.HeapInuse()
	for _, cl := range cls {
		// Unknown cmd: answered locally (result 1) after the whole frame is read.
		r, ok := cl.call(codec.Frame{Cmd: 9999, Body: body})
		if !ok || r.Result != codec.ResultUnknownCommand {
			t.Fatalf("large frame: ok=%v result=%d", ok, r.Result)
		}
	}
	// The buffer is given back when the connection goes back to reading
	// (right after the reply): poll, bounded.
	var held int64
	deadline := time.Now().Add(5 * time.Second)
	for {
		held = int64(testkit.HeapInuse()) - int64(before)
		if held <= 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections hold %d MiB after one 1 MiB frame each, want <= 8 MiB", conns, held>>20)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d idle connections after one 1 MiB frame each: %+d KiB", conns, held>>10)
}

// A failed call's message to the client never carries the upstream's
// address or socket error.
func TestUpstreamErrorNotLeaked(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	if r, ok := cl.call(codec.Frame{Cmd: cmdEcho, Body: []byte("x")}); !ok || r.Result != 0 {
		t.Fatalf("warm-up call: ok=%v result=%d", ok, r.Result)
	}
	e.gs.Stop() // the upstream goes away: calls fail with UNAVAILABLE
	// Collect failures past the first (EOF) into the redial phase, whose
	// grpc-go messages name the address and the socket error.
	failed := 0
	deadline := time.Now().Add(5 * time.Second)
	for failed < 10 {
		r, ok := cl.call(codec.Frame{Cmd: cmdEcho, Body: []byte("x"), Ext: []codec.Ext{deadlineExt(500)}})
		if !ok {
			t.Fatal("connection closed")
		}
		msg := errMsg(r)
		if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "dial") || strings.Contains(msg, "refused") || len(msg) > mapping.MaxMessageLen {
			t.Fatalf("error message leaks upstream details: %q", msg)
		}
		if r.Result != 0 {
			failed++
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d failed calls in 5s after the upstream stopped", failed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCallerMessage(t *testing.T) {
	long := strings.Repeat("é", 400)
	if m := mapping.Clip(long); len(m) > mapping.MaxMessageLen || !strings.HasSuffix(m, "...") || !strings.HasPrefix(long, strings.TrimSuffix(m, "...")) {
		t.Fatalf("long input: %d bytes %q", len(m), m[len(m)-8:])
	}
	if m := mapping.CallerMessage(14, `connection error: desc = "transport: dial tcp 10.0.0.5:9000: connect: connection refused"`); strings.Contains(m, "10.0.0.5") {
		t.Fatalf("unavailable: %q", m)
	}
	for _, m := range []string{"user 7 not found", "failing 7", "shard busy, retry"} {
		if got := mapping.CallerMessage(14, m); got != m {
			t.Fatalf("application message %q changed: %q", m, got)
		}
	}
	if m := mapping.CallerMessage(2, "backend 10.1.2.3:8080 and [::1]:9 said no"); strings.Contains(m, "10.1.2.3") || strings.Contains(m, "::1") {
		t.Fatalf("address not masked: %q", m)
	}
	if m := mapping.CallerMessage(13, "stream terminated by RST_STREAM with error code: PROTOCOL_ERROR"); m != "upstream call failed" {
		t.Fatalf("internal transport error: %q", m)
	}
}

// A client that sends requests but never reads its replies is cut off by
// the send timeout (before: the idle timeout, 5 minutes, while replies
// queued without bound), and the replies queued for it are released.
func TestNonReadingClientCutOff(t *testing.T) {
	e := newEnv(t, envOpts{sendTO: 300 * time.Millisecond})
	before := testkit.HeapInuse()
	nc, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.(*net.TCPConn).SetReadBuffer(4096)
	body := bytes.Repeat([]byte("e"), 64<<10)
	var reqs []byte
	for i := range 400 { // 25 MiB of replies: more than the kernel buffers
		reqs, err = e.codec.Append(reqs, &codec.Frame{Cmd: cmdEcho, Seq: uint32(i + 1), Body: body})
		if err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { // may block once the server stops reading; ends when cut off
		defer close(done)
		_, _ = nc.Write(reqs)
	}()
	testkit.Within(t, 10*time.Second, "the server to close the non-reading connection", func() bool { return e.srv.Conns() == 0 })
	nc.Close()
	<-done
	var held int64
	testkit.Within(t, 5*time.Second, "queued replies to be released", func() bool {
		held = int64(testkit.HeapInuse()) - int64(before)
		return held < 4<<20
	})
	t.Logf("after cut-off: %+d KiB", held>>10)
}
