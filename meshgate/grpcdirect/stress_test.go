package grpcdirect

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// TestConcurrentCalls: many goroutines share two connections; every call
// succeeds with its own reply (no stream mix-up, no lost completion).
func TestConcurrentCalls(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo})
	e := newEP(t, Config{Addr: b.addr, Conns: 2})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 32 {
		wg.Go(func() {
			for i := range 200 {
				req := []byte{byte(g), byte(i), byte(i >> 8)}
				var resp rawcodec.Message
				err := e.Invoke(ctxT(t, 10*time.Second), "/"+svc+"/Echo", req, &resp)
				if err != nil || string(resp.Bytes()) != string(req) {
					if failed.Add(1) < 5 {
						t.Errorf("goroutine %d call %d: %q %v", g, i, resp.Bytes(), err)
					}
				}
				resp.Free()
			}
		})
	}
	wg.Wait()
}
