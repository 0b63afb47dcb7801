package grpcdirect

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// expiredCtx has a deadline in the past but is not done yet: the moment
// between a caller's last deadline check and the stream's opening.
type expiredCtx struct{ context.Context }

func (expiredCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestExpiredNeverSent: a call whose deadline passed before its stream
// was opened fails DeadlineExceeded as with grpc-go's client, and the
// server never sees it (the next call on the same connection is the only
// stream that arrives).
func TestExpiredNeverSent(t *testing.T) {
	var streams atomic.Int64 // every stream whose HEADERS reached the server
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo}, grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		streams.Add(1)
		return ctx, nil
	}))
	e := newEP(t, Config{Addr: b.addr})
	cc, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	live := ctxT(t, 5*time.Second)
	var warm rawcodec.Message
	if err := e.Invoke(live, "/"+svc+"/Echo", []byte("w"), &warm); err != nil { // connected
		t.Fatal(err)
	}
	streams.Store(0)
	var r1, r2 rawcodec.Message
	got := e.Invoke(expiredCtx{live}, "/"+svc+"/Echo", []byte("late"), &r1)
	want := cc.Invoke(expiredCtx{live}, "/"+svc+"/Echo", []byte("late"), &r2)
	if gs, ws := status.Convert(got), status.Convert(want); gs.Code() != ws.Code() || gs.Message() != ws.Message() {
		t.Fatalf("got %v, grpc-go %v", got, want)
	}
	if err := e.Invoke(live, "/"+svc+"/Echo", []byte("next"), &r1); err != nil {
		t.Fatal(err)
	}
	if n := streams.Load(); n != 1 {
		t.Fatalf("the server saw %d streams, want only the call after the expired one", n)
	}
}
