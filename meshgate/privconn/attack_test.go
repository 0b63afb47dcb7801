package privconn_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// nonReader is a backend that accepts, never reads, and keeps the
// connection looking alive: it sends an unsolicited heartbeat reply every
// 20 ms, so liveness (which watches reads) never fires. Only a bound on
// MeshGate's own writes releases what the connection holds.
func nonReader(t *testing.T) string {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	return rawServer(t, func(nc net.Conn) {
		hb, _ := mgpc.Append(nil, &codec.Frame{Flags: codec.FlagHeartbeat | codec.FlagResponse})
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := nc.Write(hb); err != nil {
					return
				}
			}
		}
	})
}

// TestAttackBackendStopsReading: a backend that takes no bytes (but keeps
// answering nothing except heartbeats) fills the socket buffer. Every
// call, including the one whose goroutine is stuck in the socket write,
// returns; the write timeout closes the connection with an error that
// says so, and pending requests fail with ErrClosed. Before, the writing
// caller stayed blocked until the peer went away, whatever its deadline.
func TestAttackBackendStopsReading(t *testing.T) {
	addr := nonReader(t)
	ctx := testkit.Context(t, 10*time.Second)
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{Heartbeat: time.Hour, WriteTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	body := make([]byte, 1<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, err := cn.Do(rctx, &codec.Frame{Cmd: 1, Body: body})
			errs <- err
		}()
	}
	select {
	case <-cn.Done():
	case <-ctx.Done():
		t.Fatal("a connection whose peer stopped reading is still open")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("a call to a peer that reads nothing succeeded")
		}
	}
	if err := cn.Err(); !errors.Is(err, privconn.ErrClosed) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("close cause %v: want ErrClosed wrapping the write deadline", err)
	}
}

// TestAttackWriteBacklogBounded: while the socket takes nothing, at most
// privconn.MaxBacklog bytes queue behind the stuck write; further requests
// are refused at once with ErrWriteBacklog (not sent: another connection
// may take them) instead of growing the buffer without bound.
func TestAttackWriteBacklogBounded(t *testing.T) {
	addr := nonReader(t)
	ctx := testkit.Context(t, 10*time.Second)
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{Heartbeat: time.Hour, WriteTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 256<<10)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cn.Close()
	refused := 0
	for i := 0; refused == 0; i++ {
		if i > 1000 {
			t.Fatalf("%d requests of %d bytes queued behind a stuck write", i, len(body))
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			_, err := cn.Do(rctx, &codec.Frame{Cmd: 1, Body: body})
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, privconn.ErrWriteBacklog) || !errors.Is(err, privconn.ErrTooManyInFlight) {
				t.Fatalf("request %d: %v, want ErrWriteBacklog", i, err)
			}
			refused++
		case <-time.After(20 * time.Millisecond):
			// Queued (or writing): its goroutine ends when cn closes.
		}
	}
	select {
	case <-cn.Done():
		t.Fatalf("a full backlog closed the connection: %v", cn.Err())
	default:
	}
}
