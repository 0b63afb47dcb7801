package grpcdirect

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// readAll reads frames until the connection ends.
func readAll(fr *http2.Framer) {
	for {
		if _, err := fr.ReadFrame(); err != nil {
			return
		}
	}
}

// TestLostReasons: each way a real server can lose a direct connection
// is reported once to Config.OnLost with its reason; Close reports
// nothing.
func TestLostReasons(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	var goaways atomic.Int32
	for _, tc := range []struct {
		reason string
		cfg    Config
		serve  func(fr *http2.Framer)
		call   bool // make calls (a stalled peer is only noticed by a write)
	}{
		{LostProtocol, Config{}, func(fr *http2.Framer) {
			_ = fr.WriteRawFrame(http2.FramePing, 0, 0, []byte{1, 2, 3, 4}) // a PING is 8 bytes
			readAll(fr)
		}, false},
		{LostGoAway, Config{}, func(fr *http2.Framer) {
			// The first connection only: after a GOAWAY the slot redials
			// at once, without backoff.
			if goaways.Add(1) == 1 {
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			}
			readAll(fr)
		}, false},
		{LostClosed, Config{}, func(fr *http2.Framer) {
			for { // once the client acknowledged the SETTINGS, close
				f, err := fr.ReadFrame()
				if s, ok := f.(*http2.SettingsFrame); err != nil || ok && s.IsAck() {
					return
				}
			}
		}, false},
		{LostLiveness, Config{KeepaliveTime: 30 * time.Millisecond, KeepaliveTimeout: 50 * time.Millisecond}, readAll, false},
		{LostWriteTimeout, Config{WriteTimeout: 200 * time.Millisecond}, func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
			_ = fr.WriteWindowUpdate(0, 1<<31-1-65535)
			<-stall // never read again
		}, true},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			lost := make(chan string, 16)
			cfg := tc.cfg
			cfg.Addr = rawH2Server(t, tc.serve)
			cfg.BackoffBase, cfg.BackoffMax = time.Hour, time.Hour // one connection: no redial
			cfg.OnLost = func(r string) { lost <- r }
			e := newEP(t, cfg)
			if tc.call {
				testkit.Within(t, 10*time.Second, "the connection ready", func() bool { return e.Ready(0) })
				big := make([]byte, 4<<20-64)
				for range 6 { // 24 MiB: more than loopback's socket buffers hold
					go func() {
						var resp rawcodec.Message
						_ = e.Invoke(ctxT(t, 30*time.Second), "/"+svc+"/Echo", big, &resp)
					}()
				}
			}
			if got := testkit.Receive(t, lost, 10*time.Second, "no connection loss reported"); got != tc.reason {
				t.Fatalf("reason %q, want %q", got, tc.reason)
			}
			e.Close()
			select {
			case r := <-lost:
				t.Fatalf("a second loss reported: %q", r)
			default:
			}
		})
	}
}

// TestLostNotOnClose: closing the endpoint loses nothing.
func TestLostNotOnClose(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", nil)
	lost := make(chan string, 4)
	e := New(Config{Addr: b.addr, OnLost: func(r string) { lost <- r }})
	testkit.Within(t, 10*time.Second, "the connection ready", func() bool { return e.Ready(0) })
	e.Close()
	select {
	case r := <-lost:
		t.Fatalf("Close reported a loss: %q", r)
	default:
	}
}

// TestLostReason classifies the causes close gets.
func TestLostReason(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("read: %w", http2.ConnectionError(http2.ErrCodeProtocol)): LostProtocol,
		protocolError(errors.New("x")):                                       LostProtocol,
		errGoAway:                                                            LostGoAway,
		errDrained:                                                           LostGoAway,
		errLiveness:                                                          LostLiveness,
		status.Error(codes.Internal, "other"):                                LostError,
	} {
		if got := LostReason(err); got != want {
			t.Errorf("LostReason(%v) = %q, want %q", err, got, want)
		}
	}
}
