package grpcserve

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/meshgate/connio"
)

// finishOnFlush is a connio.Flusher that answers a call when its batch
// is flushed: the reply exists only if the flush happens.
type finishOnFlush struct{ cl *Call }

func (f finishOnFlush) FlushBatch() { f.cl.Finish(nil) }

// batchStarter starts calls on the reading goroutine. Calls to /t.S/M
// leave their answer to the reader's batch (Call.Batch), as a request
// sent to an upstream connection is; other calls are answered by a
// goroutine of their own with FinishNoWaitIn on a batch of that
// goroutine, which reports whether the answer was held before flushing.
type batchStarter struct{ held chan bool }

func (batchStarter) Start(c *Call) { c.Finish(nil) }

func (s batchStarter) TryStart(cl *Call) bool {
	if cl.Method() == "/t.S/M" {
		cl.Batch().Defer(finishOnFlush{cl})
		return true
	}
	go func() {
		var b connio.Batch
		_ = cl.SendMsg([]byte("r"))
		cl.FinishNoWaitIn(nil, &b)
		cl.c.wmu.Lock()
		held := cl.c.wb != nil && len(*cl.c.wb) > 0
		cl.c.wmu.Unlock()
		s.held <- held && b.Pending()
		b.Flush()
	}()
	return true
}

// TestReaderFlushesBatchBeforeReading: what a call started on the reading
// goroutine leaves to its batch is flushed before the reader waits for
// more bytes. Here the answer itself waits for the flush, so a reader that
// went back to its socket first would leave the client without a reply.
func TestReaderFlushesBatchBeforeReading(t *testing.T) {
	ts := start(t, batchStarter{}, nil)
	rc := rawDial(t, ts.addr)
	for id := uint32(1); id <= 5; id += 2 {
		rc.headers(id, false, grpcReq...)
		_ = rc.fr.WriteData(id, true, msg([]byte("q")))
		if st, err := rc.statusOf(id); err != nil || st["grpc-status"] != "0" {
			t.Fatalf("stream %d: %v %v", id, st, err)
		}
	}
}

// TestFinishNoWaitInHoldsForBatch: an answer finished with a batch is
// held on the connection (not written) until the batch is flushed, and
// then reaches the client.
func TestFinishNoWaitInHoldsForBatch(t *testing.T) {
	s := batchStarter{held: make(chan bool, 1)}
	ts := start(t, s, nil)
	rc := rawDial(t, ts.addr)
	req := append([]string(nil), grpcReq...)
	req[5] = "/t.S/Other"
	rc.headers(1, false, req...)
	_ = rc.fr.WriteData(1, true, msg([]byte("q")))
	select {
	case held := <-s.held:
		if !held {
			t.Fatal("the answer was written before its batch was flushed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no call")
	}
	if st, err := rc.statusOf(1); err != nil || st["grpc-status"] != "0" {
		t.Fatalf("after the flush: %v %v", st, err)
	}
}

// TestStreamSlotFreeBeforeTrailers: a grpc-go client keeping its
// connection at the server's MAX_CONCURRENT_STREAMS opens a new stream as
// soon as it reads the last one's trailers; the server must have freed
// that stream's slot by then (as grpc-go's server does), or the new
// stream is refused (REFUSED_STREAM → UNAVAILABLE).
func TestStreamSlotFreeBeforeTrailers(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.MaxConcurrentStreams = 2 })
	cc := dial(t, ts.addr)
	atStreamLimit(t, 300, func(ctx context.Context) error {
		var resp []byte
		return cc.Invoke(ctx, "/t.S/M", &[]byte{1}, &resp)
	})
}

// TestDelegatedStreamSlotFreeBeforeTrailers: the same for calls
// delegated to the Fallback grpc-go server.
func TestDelegatedStreamSlotFreeBeforeTrailers(t *testing.T) {
	ts, _, _, _ := startHybrid(t, func(c *Config) { c.MaxConcurrentStreams = 2 })
	tc := testgrpc.NewTestServiceClient(dialPlain(t, ts.addr))
	atStreamLimit(t, 200, func(ctx context.Context) error {
		_, err := tc.EmptyCall(ctx, &testgrpc.Empty{})
		return err
	})
}

// atStreamLimit runs 8 callers of n calls each (more than the server's
// stream limit) and fails on the first call that fails.
func atStreamLimit(t *testing.T, n int, call func(context.Context) error) {
	ctx := ctxT(t, 20*time.Second)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range n {
				if err := call(ctx); err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("call: %v", err)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d callers failed", n)
	}
}
