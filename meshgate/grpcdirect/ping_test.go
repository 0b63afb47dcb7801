package grpcdirect

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// rawH2Server accepts connections, reads the client preface, sends an
// empty SETTINGS and hands the framer to serve.
func rawH2Server(t *testing.T, serve func(fr *http2.Framer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				pre := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, pre); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				if fr.WriteSettings() != nil {
					return
				}
				serve(fr)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestServerPingAnswered: a PING from the server on an idle connection is
// acknowledged (acks are buffered and flushed by the background goroutine
// when no request carries them).
func TestServerPingAnswered(t *testing.T) {
	acked := make(chan struct{}, 1)
	addr := rawH2Server(t, func(fr *http2.Framer) {
		if fr.WritePing(false, [8]byte{1, 2, 3}) != nil {
			return
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == [8]byte{1, 2, 3} {
				acked <- struct{}{}
			}
		}
	})
	e := newEP(t, Config{Addr: addr})
	testkit.Receive(t, acked, 5*time.Second, "server PING never acknowledged")
	_ = e
}

// TestKeepaliveClosesDeadPeer: with keepalive, a server that stops
// answering (PING never acknowledged) has its connection closed.
func TestKeepaliveClosesDeadPeer(t *testing.T) {
	pinged := make(chan struct{}, 1)
	addr := rawH2Server(t, func(fr *http2.Framer) {
		for { // read everything, answer nothing
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				select {
				case pinged <- struct{}{}:
				default:
				}
			}
		}
	})
	e := newEP(t, Config{Addr: addr, KeepaliveTime: 30 * time.Millisecond, KeepaliveTimeout: 50 * time.Millisecond})
	testkit.Receive(t, pinged, 5*time.Second, "no keepalive PING sent")
	testkit.Within(t, 10*time.Second, "the unanswered connection to close", func() bool {
		err := e.LastError()
		return err != nil && strings.Contains(err.Error(), "keepalive")
	})
}

// TestGoAwayRefusedStreamRetried: a GOAWAY whose last stream id is below a
// call's stream fails the stream as never processed; the call is retried
// once on another connection, then fails Unavailable.
func TestGoAwayRefusedStreamRetried(t *testing.T) {
	var headers atomic.Int32
	addr := rawH2Server(t, func(fr *http2.Framer) {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.HeadersFrame); ok {
				headers.Add(1)
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			}
		}
	})
	e := newEP(t, Config{Addr: addr, Conns: 2})
	testkit.Within(t, 10*time.Second, "both connections ready", func() bool { return e.Ready(0) && e.Ready(1) })
	var resp rawcodec.Message
	err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("x"), &resp)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("refused call: %v", err)
	}
	if n := headers.Load(); n != 2 {
		t.Fatalf("server saw %d attempts, want 2 (one transparent retry)", n)
	}
}

// TestWriteTimeoutStalledPeer: a server that opens its windows wide and
// then never reads fills the socket buffers; the blocked write times out,
// the connection is closed and every call on it fails Unavailable well
// before its own (long) deadline, instead of waiting on a write for ever.
func TestWriteTimeoutStalledPeer(t *testing.T) {
	stop := make(chan struct{})
	addr := rawH2Server(t, func(fr *http2.Framer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
		_ = fr.WriteWindowUpdate(0, 1<<31-1-65535)
		<-stop // never read again
	})
	t.Cleanup(func() { close(stop) })
	e := newEP(t, Config{Addr: addr, WriteTimeout: 200 * time.Millisecond})
	testkit.Within(t, 10*time.Second, "the connection ready", func() bool { return e.Ready(0) })
	big := make([]byte, 4<<20-64)
	const calls = 6 // 24 MiB: more than loopback's socket buffers hold
	errs := make(chan error, calls)
	start := time.Now()
	for range calls {
		go func() {
			var resp rawcodec.Message
			errs <- e.Invoke(ctxT(t, 60*time.Second), "/"+svc+"/Echo", big, &resp)
		}()
	}
	for range calls {
		select {
		case err := <-errs:
			if status.Code(err) != codes.Unavailable {
				t.Errorf("call on a stalled connection: %v, want Unavailable", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("calls still blocked on a peer that stopped reading")
		}
	}
	t.Logf("all %d calls failed after %v", calls, time.Since(start).Round(time.Millisecond))
}
