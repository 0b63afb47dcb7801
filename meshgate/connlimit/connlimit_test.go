package connlimit

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func listen(t *testing.T, o Options) (net.Listener, chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listener(ln, o)
	accepted := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	return l, accepted
}

func TestListenerCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	rej, err := NewRejected(reg)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	l, accepted := listen(t, Options{Name: "g", Max: 2, Rejected: rej, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var server []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		server = append(server, <-accepted)
	}
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("past the cap: %v, want EOF", err)
		}
		c.Close()
	}
	if n := testutil.ToFloat64(rej.WithLabelValues("g", ReasonMaxConnections)); n != 3 {
		t.Fatalf("rejected %v, want 3", n)
	}
	if n := strings.Count(logs.String(), "connection refused"); n != 1 {
		t.Fatalf("%d log lines for 3 refusals within a second, want 1:\n%s", n, logs.String())
	}
	// Closing (twice) frees exactly one slot.
	server[0].Close()
	server[0].Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := testkit.Receive(t, accepted, 5*time.Second, "no accept after a slot was freed")
	s.Close()
	if n := l.(*listener).Open(); n != 1 {
		t.Fatalf("open %d, want 1", n)
	}
}

// A client that stops reading its socket is cut off by the write timeout.
func TestWriteTimeout(t *testing.T) {
	l, accepted := listen(t, Options{Name: "g", WriteTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // never read
	s := <-accepted
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Write(buf); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write: %v, want a deadline error", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a non-reading client never timed out")
		}
	}
}

func TestInReserve(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if InReserve(c, 0) {
		t.Fatal("reserve 0 refuses")
	}
	if !InReserve(c, int(fdLimit())) {
		t.Fatal("a reserve as large as the fd limit does not refuse")
	}
	if InReserve(c, 1) {
		t.Fatal("a reserve of 1 refuses a low descriptor")
	}
}
