package grpcserve

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/meshgate/meshgate/internal/testkit"
)

// TestFinishNoWaitStalledClient: one goroutine completes every call, as an
// upstream connection's reader does for calls started on the I/O
// goroutines. A client that advertises huge flow-control windows and then
// stops reading fills its socket with large answers; with FinishNoWait
// the completing goroutine still answers another client at once (the
// stalled client's answers wait on goroutines of their own). With Finish
// it would be stuck in that client's write for the write timeout.
func TestFinishNoWaitStalledClient(t *testing.T) {
	calls := make(chan *Call, 1024)
	ts := start(t, handlerFunc(func(c *Call) { calls <- c }), func(cfg *Config) {
		cfg.Blocking = false
		cfg.WriteTimeout = time.Minute
	})
	big := bytes.Repeat([]byte{'x'}, 256<<10)
	var answered atomic.Int64 // big calls the completer is done with
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the one completing goroutine
		defer wg.Done()
		for {
			select {
			case c := <-calls:
				b, _, _ := c.Message()
				if c.Method() == "/t.S/Big" {
					b = big
				}
				_ = c.SendMsg(b)
				c.FinishNoWait(nil)
				if c.Method() == "/t.S/Big" {
					answered.Add(1)
				}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		ts.Close() // ends a write the completer might be stuck in
		wg.Wait()
	})

	rc := rawDial(t, ts.addr)
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	bigReq := reqWith(":path", "/t.S/Big")
	const n = 80 // 20 MB of answers: more than loopback's socket buffers hold
	for i := range n {
		id := uint32(2*i + 1)
		rc.headers(id, false, bigReq...)
		if err := rc.fr.WriteData(id, true, msg([]byte("q"))); err != nil {
			t.Fatal(err)
		}
	}
	// The completer gets past every big call (with Finish it would stop
	// at the first answer the stalled socket cannot take).
	testkit.Within(t, 10*time.Second, "the completing goroutine to get past the stalled client's calls", func() bool { return answered.Load() == n })

	cc := dial(t, ts.addr)
	var out []byte
	if err := cc.Invoke(ctxT(t, 5*time.Second), "/t.S/M", []byte("hello"), &out); err != nil || string(out) != "hello" {
		t.Fatalf("another client's call while one client stalls: %v %q", err, out)
	}
}
