package grpcdirect

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// TestStartInBatch: a call started with a batch is not written until the
// batch is flushed (then it is answered), and its completion by the
// connection's reader comes with that reader's batch, which the caller
// may leave its own writes to.
func TestStartInBatch(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo})
	e := newEP(t, Config{Addr: b.addr})
	warm(t, e)

	type result struct {
		err     error
		body    []byte
		replyOK bool
	}
	ch := make(chan result, 1)
	resp := new(rawcodec.Message)
	var batch connio.Batch
	e.StartIn(context.Background(), "/"+svc+"/Echo", time.Now().Add(5*time.Second), []byte("batched"), resp, &batch,
		func(err error, rb *connio.Batch) {
			ch <- result{err, bytes.Clone(resp.Bytes()), rb != nil && !rb.Pending()}
			resp.Free()
		})
	if !batch.Pending() {
		t.Fatal("the request was written at once; want it left to the batch")
	}
	batch.Flush()
	select {
	case r := <-ch:
		if r.err != nil || string(r.body) != "batched" {
			t.Fatalf("reply %q, %v", r.body, r.err)
		}
		if !r.replyOK {
			t.Fatal("the reader's completion came without its (empty) batch")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no completion after the flush")
	}
}
