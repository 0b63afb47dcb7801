package inbound

import (
	"strconv"
	"testing"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestRequestsReuseWorkers checks that a connection's requests run on
// reused worker goroutines: 200 calls one after another start (almost) no
// goroutine in the process besides the one that waits for the next frame
// after each call (idle.go; counted by the server and subtracted). The
// backend serves its streams on grpc-go's stream workers, so every
// goroutine started per call would be MeshGate's; before the worker pool
// each request started its own goroutine (≥ 200).
func TestRequestsReuseWorkers(t *testing.T) {
	e := newEnv(t, envOpts{backend: []grpc.ServerOption{grpc.NumStreamWorkers(4)}})
	cl := e.dial()
	call := func(i int) {
		r, ok, _ := tryWait(cl.start(codec.Frame{Cmd: cmdEcho, Body: []byte(strconv.Itoa(i))}))
		if !ok || r.Result != 0 || string(r.Body) != strconv.Itoa(i) {
			t.Fatalf("call %d: ok=%v result=%d body=%q", i, ok, r.Result, r.Body)
		}
	}
	for i := 0; i < 20; i++ { // connections and workers up
		call(i)
	}
	const n = 200
	before, waits := testkit.GoroutinesCreated(), e.srv.waits.Load()
	for i := 0; i < n; i++ {
		call(i)
	}
	waits = e.srv.waits.Load() - waits // read first: counted before the goroutine starts
	if created := int64(testkit.GoroutinesCreated()-before) - waits; created > n/10 {
		t.Fatalf("%d goroutines started for %d sequential requests; want at most %d (requests run on reused workers)", created, n, n/10)
	}
}
