package outbound_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcserve"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// workersClient serves e's listener on the direct server transport with
// every call on a request worker (no TryStart: the path of a listener
// with telemetry on or a route with retries) and returns a client of it.
func workersClient(t *testing.T, e *env) *grpc.ClientConn {
	t.Helper()
	h := struct{ grpcserve.Handler }{e.out.DirectHandler(nil, nil)}
	gs := grpcserve.New(grpcserve.Config{Name: "grpc-in", Blocking: true, Handler: h})
	ln := testkit.Listen(t, "127.0.0.1:0")
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Close)
	return testkit.Client(t, ln.Addr().String())
}

// TestDirectWorkersDeadlineAsValue: a gRPC → private call on a worker of
// the direct server transport carries its deadline as a value
// (PrivatePool.DoPolicyUntil: a privconn Start per attempt, the
// connection's timer): the metadata and the deadline reach the backend,
// the client's deadline and the route's timeout end the call with
// DeadlineExceeded on time, the slot is freed and the late reply counted,
// and the client's cancellation cancels the upstream request.
func TestDirectWorkersDeadlineAsValue(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	routes := append([]config.Route(nil), defaultRoutes...)
	routes = append(routes, config.Route{Method: "/test.Echo/SlowShort", Cmd: legacy.CmdSlow, Upstream: "legacy", Timeout: 100 * time.Millisecond})
	if err := e.out.Update(listener(routes...), upstream.Set{Private: map[string]*upstream.PrivatePool{"legacy": e.pool}}); err != nil {
		t.Fatal(err)
	}
	cc := workersClient(t, e)
	invoke := func(ctx context.Context, method string, body []byte) ([]byte, error) {
		var out []byte
		err := cc.Invoke(ctx, method, body, &out)
		return out, err
	}

	ctx := metadata.AppendToOutgoingContext(tctx(t, 5*time.Second), "x-mgp-uin", "4242")
	if out, err := invoke(ctx, "/test.Echo/Echo", []byte("hello")); err != nil || string(out) != "hello" {
		t.Fatalf("echo: %q %v", out, err)
	}
	if f, ok := e.seen.get("hello"); !ok || f.UIN != 4242 {
		t.Fatalf("backend saw %+v %v; want uin 4242", f, ok)
	} else if ms, _ := mgp.Deadline(&f); ms == 0 || ms > 5000 {
		t.Fatalf("deadline ext %d", ms)
	}

	// Concurrent calls on the pool's one connection: each reply is its
	// own (a reply aliasing the connection reader's buffer would be
	// overwritten by the next one read).
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				body := fmt.Sprintf("g%d-call%d-%s", g, i, strings.Repeat("x", i*7))
				if out, err := invoke(ctx, "/test.Echo/Echo", []byte(body)); err != nil || string(out) != body {
					t.Errorf("echo %q: %q %v", body, out, err)
					return
				}
			}
		})
	}
	wg.Wait()

	// The client's deadline.
	cctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, err := invoke(cctx, "/test.Echo/Slow", []byte{0, 0, 0x03, 0xe8, 'a'}); status.Code(err) != codes.DeadlineExceeded { // 1000 ms
		t.Fatalf("client deadline: %v", err)
	}
	if el := time.Since(t0); el > 500*time.Millisecond {
		t.Fatalf("client deadline honoured after %v", el)
	}
	// The route's timeout, the client giving none: MeshGate's answer.
	t0 = time.Now()
	_, err := invoke(context.Background(), "/test.Echo/SlowShort", []byte{0, 0, 0x03, 0xe8, 'b'})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("route timeout: %v", err)
	}
	if el := time.Since(t0); el < 90*time.Millisecond || el > 600*time.Millisecond {
		t.Fatalf("route timeout after %v, want about 100ms", el)
	}
	testkit.Within(t, 3*time.Second, "late replies counted, no request in flight", func() bool {
		st := e.pool.Stats()
		return st.Late == 2 && st.InFlight == 0
	})

	// The client's cancellation.
	cctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := invoke(cctx, "/test.Echo/Slow", []byte{0, 0, 0x07, 0xd0, 'c'}) // 2000 ms
		errc <- err
	}()
	testkit.Within(t, 3*time.Second, "request in flight", func() bool { return e.pool.Stats().InFlight == 1 })
	t0 = time.Now()
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v", err)
	}
	testkit.Within(t, time.Second, "the upstream request cancelled", func() bool { return e.pool.Stats().InFlight == 0 })
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("upstream request ended %v after the cancel", el)
	}
}
