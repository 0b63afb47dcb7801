package grpcpool

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
)

// frameSpy is a listener whose connections copy every byte the client
// sends to an HTTP/2 frame parser, which counts the client's PINGs and
// records the INITIAL_WINDOW_SIZE of its SETTINGS.
type frameSpy struct {
	net.Listener
	pings  atomic.Int64
	window atomic.Int64 // 0 = not announced (the default 64 KB)
	wg     sync.WaitGroup
}

func (s *frameSpy) Accept() (net.Conn, error) {
	nc, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer pr.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(pr, preface); err != nil || !bytes.Equal(preface, []byte(http2.ClientPreface)) {
			return
		}
		fr := http2.NewFramer(io.Discard, pr)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.PingFrame:
				if !f.IsAck() {
					s.pings.Add(1)
				}
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					s.window.Store(int64(v))
				}
			}
		}
	}()
	return &spyConn{Conn: nc, w: pw}, nil
}

type spyConn struct {
	net.Conn
	w *io.PipeWriter
}

func (c *spyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		_, _ = c.w.Write(p[:n])
	}
	if err != nil {
		_ = c.w.CloseWithError(err)
	}
	return n, err
}

func (c *spyConn) Close() error {
	_ = c.w.Close()
	return c.Conn.Close()
}

// TestStaticWindowsNoBDPPings checks that a pool's connections use fixed
// flow-control windows: the client announces StreamWindow in its SETTINGS
// and sends no BDP-estimation PINGs while it receives replies. grpc-go's
// default (dynamic windows) pings on received DATA frames: on every call
// of a sequence of small unary calls, a write and a wake-up on both ends.
func TestStaticWindowsNoBDPPings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spy := &frameSpy{Listener: ln}
	gs := demo.NewServer()
	demo.RegisterRaw(gs, "test.Svc", map[string]demo.Handler{
		"Echo": func(_ context.Context, b []byte) ([]byte, error) { return b, nil },
	})
	go func() { _ = gs.Serve(spy) }()
	defer spy.wg.Wait()
	defer gs.Stop()

	p := newPool(t, config.Upstream{Name: "u", Protocol: "grpc", Endpoints: []string{ln.Addr().String()}, Connections: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body := bytes.Repeat([]byte("x"), 1024)
	for i := 0; i < 50; i++ {
		var out []byte
		if err := p.Invoke(ctx, "/test.Svc/Echo", body, &out); err != nil {
			t.Fatal(err)
		}
		if len(out) != len(body) {
			t.Fatalf("reply %d bytes", len(out))
		}
	}
	// The frames are parsed asynchronously: the SETTINGS came first, and
	// a PING sent during the calls was read by the server before the
	// replies it preceded. Give the parser a bounded moment to catch up.
	testkit.Await(2*time.Second, func() bool { return spy.window.Load() != 0 })
	if got := spy.window.Load(); got != StreamWindow {
		t.Errorf("client INITIAL_WINDOW_SIZE = %d, want %d (static)", got, StreamWindow)
	}
	if n := spy.pings.Load(); n != 0 {
		t.Errorf("client sent %d PINGs over 50 calls; want 0 (no BDP estimation)", n)
	}
}
