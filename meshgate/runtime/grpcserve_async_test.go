package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/grpcserve"
)

// asyncConfig is a direct grpc listener whose routes go to a legacy MGP
// server (and one to an upstream nobody listens on), with a route
// timeout long enough that only the client ends a slow call.
func asyncConfig(legacyEP, deadEP string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 10s, drain_timeout: 5s}
listeners:
  - name: direct
    kind: grpc
    address: 127.0.0.1:0
    grpc_transport: direct
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
      - {method: /legacy.Legacy/Slow, cmd: 4, upstream: legacy}
      - {method: /legacy.Legacy/Oneway, cmd: 1, upstream: legacy, oneway: true}
      - {method: /legacy.Legacy/Dead, cmd: 1, upstream: dead}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 2}
  - {name: dead, protocol: private, endpoints: [%q], connections: 1}
`, legacyEP, deadEP)
}

// asyncEnv starts the runtime; it returns the direct listener's server.
func asyncEnv(t *testing.T) (*Runtime, *grpcserve.Server) {
	t.Helper()
	ln := testkit.Listen(t, "127.0.0.1:0")
	dead := ln.Addr().String()
	_ = ln.Close() // nobody listens there now
	rt := start(t, mustParse(t, asyncConfig(legacyServer(t), dead)))
	rt.mu.Lock()
	srv := rt.listeners["direct"].srv.(*grpcServer).direct
	rt.mu.Unlock()
	if srv == nil {
		t.Fatal("the direct listener is not served by grpcserve")
	}
	return rt, srv
}

// noHandOff fails the test if srv started a call on a worker: every call
// so far was answered from the I/O goroutines.
func noHandOff(t *testing.T, srv *grpcserve.Server) {
	t.Helper()
	if n := srv.HandedOff(); n != 0 {
		t.Fatalf("%d calls handed off to workers", n)
	}
}

func slowBody(ms uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], ms)
	return b[:]
}

// Calls routed to a private upstream with one attempt are started on the
// connection's reading goroutine and finished by the upstream's reply: no
// call is handed to a worker, under concurrency, with metadata mapped both
// ways and the route metrics counted. A oneway call (not eligible) still
// goes to a worker, so the count does count hand-offs.
func TestDirectAsyncNoHandOff(t *testing.T) {
	rt, srv := asyncEnv(t)
	cc := testkit.Client(t, rt.Addr("direct").String())
	const workers, per = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				body := fmt.Sprint("body-", w, "-", i)
				o := invoke(t, cc, "/legacy.Legacy/Echo", []byte(body), "x-mgp-ext-32770-bin", string([]byte{byte(w), byte(i)}))
				if o.Code != codes.OK || o.Body != body {
					errs <- fmt.Errorf("call %d/%d: %+v", w, i, o)
					return
				}
				if v := o.Header.Get("x-mgp-ext-32770-bin"); len(v) != 1 || v[0] != string([]byte{byte(w), byte(i)}) {
					errs <- fmt.Errorf("call %d/%d: reply extension as header: %v", w, i, o.Header)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	noHandOff(t, srv)
	if n := count(t, rt, "meshgate_requests_total", "direct"); n != workers*per {
		t.Fatalf("meshgate_requests_total{listener=direct} = %v, want %d", n, workers*per)
	}
	if o := invoke(t, cc, "/legacy.Legacy/Oneway", []byte("x")); o.Code != codes.OK {
		t.Fatalf("oneway: %+v", o)
	}
	if n := srv.HandedOff(); n != 1 {
		t.Fatalf("the oneway call: %d hand-offs, want 1", n)
	}
}

// The call's grpc-timeout bounds the upstream wait: DEADLINE_EXCEEDED at
// about the deadline, on the I/O goroutines.
func TestDirectAsyncDeadline(t *testing.T) {
	rt, srv := asyncEnv(t)
	cc := testkit.Client(t, rt.Addr("direct").String())
	ctx, cancel := context.WithTimeout(testkit.Context(t, 5*time.Second), 150*time.Millisecond)
	defer cancel()
	var out []byte
	t0 := time.Now()
	err := cc.Invoke(ctx, "/legacy.Legacy/Slow", slowBody(3000), &out)
	el := time.Since(t0)
	if code := status.Code(err); code != codes.DeadlineExceeded {
		t.Fatalf("slow call: %v, want DEADLINE_EXCEEDED", err)
	}
	if el > 2*time.Second {
		t.Fatalf("answered after %v", el)
	}
	noHandOff(t, srv)
}

// A client that cancels its call resets the stream: the upstream request
// is cancelled at once (the endpoint's in-flight count returns to zero
// long before the upstream would answer or the route time out), the call
// is counted once, and the connection serves on.
func TestDirectAsyncClientCancel(t *testing.T) {
	rt, srv := asyncEnv(t)
	cc := testkit.Client(t, rt.Addr("direct").String())
	ep := rt.upstreams.Load().priv["legacy"].Endpoints()[0]
	ctx, cancel := context.WithCancel(testkit.Context(t, 10*time.Second))
	done := make(chan error, 1)
	go func() {
		var out []byte
		done <- cc.Invoke(ctx, "/legacy.Legacy/Slow", slowBody(8000), &out)
	}()
	if !testkit.Await(5*time.Second, func() bool { return ep.InFlight() == 1 }) {
		cancel()
		t.Fatal("the call did not reach the upstream")
	}
	t0 := time.Now()
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("canceled call: %v", err)
	}
	if !testkit.Await(3*time.Second, func() bool { return ep.InFlight() == 0 }) {
		t.Fatalf("the upstream request was not cancelled: in flight %d after %v", ep.InFlight(), time.Since(t0))
	}
	if !testkit.Await(3*time.Second, func() bool { return count(t, rt, "meshgate_requests_total", "direct") == 1 }) {
		t.Fatalf("meshgate_requests_total{listener=direct} = %v, want 1", count(t, rt, "meshgate_requests_total", "direct"))
	}
	if o := invoke(t, cc, "/legacy.Legacy/Echo", []byte("after")); o.Code != codes.OK || o.Body != "after" {
		t.Fatalf("after the cancel: %+v", o)
	}
	noHandOff(t, srv)
}

// An upstream that cannot be reached answers UNAVAILABLE, as the worker
// path does, and the reply comes from the I/O goroutines.
func TestDirectAsyncUpstreamDown(t *testing.T) {
	rt, srv := asyncEnv(t)
	cc := testkit.Client(t, rt.Addr("direct").String())
	o := invoke(t, cc, "/legacy.Legacy/Dead", []byte("x"), "x-mgp-uin", "7")
	if o.Code != codes.Unavailable {
		t.Fatalf("call to a dead upstream: %+v, want UNAVAILABLE", o)
	}
	noHandOff(t, srv)
	if o := invoke(t, cc, "/legacy.Legacy/Echo", []byte("x"), "x-mgp-uin", "nope"); o.Code != codes.InvalidArgument {
		t.Fatalf("bad uin: %+v, want INVALID_ARGUMENT", o)
	}
}

// Concurrent calls, a third of them cancelled by their clients at
// different points (before, while and after the upstream has them): each
// call ends with its own outcome, each successful call is counted exactly
// once as OK (and no call twice), nothing stays in flight upstream, and
// no call is handed off.
func TestDirectAsyncConcurrentCancel(t *testing.T) {
	rt, srv := asyncEnv(t)
	cc := testkit.Client(t, rt.Addr("direct").String())
	ep := rt.upstreams.Load().priv["legacy"].Endpoints()[0]
	const n = 60
	var wg sync.WaitGroup
	var ok atomic.Int64
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(testkit.Context(t, 10*time.Second))
			defer cancel()
			if i%3 == 0 {
				time.AfterFunc(time.Duration(i)*time.Millisecond, cancel)
			}
			var out []byte
			err := cc.Invoke(ctx, "/legacy.Legacy/Slow", slowBody(100), &out)
			switch code := status.Code(err); {
			case code == codes.OK:
				ok.Add(1)
			case i%3 != 0:
				errs <- fmt.Errorf("call %d: %v", i, err)
			case code != codes.Canceled:
				errs <- fmt.Errorf("cancelled call %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ok.Load() < n*2/3 {
		t.Fatalf("%d calls OK, want at least %d", ok.Load(), n*2/3)
	}
	if !testkit.Await(5*time.Second, func() bool { return ep.InFlight() == 0 }) {
		t.Fatalf("%d requests still in flight upstream", ep.InFlight())
	}
	okCounted := countCode(t, rt, "direct", "OK")
	if all := count(t, rt, "meshgate_requests_total", "direct"); okCounted != float64(ok.Load()) || all > n {
		t.Fatalf("meshgate_requests_total: OK %v (want %d), all %v (want at most %d)", okCounted, ok.Load(), all, n)
	}
	noHandOff(t, srv)
}

// countCode is meshgate_requests_total of listener l with code c.
func countCode(t *testing.T, rt *Runtime, l, c string) float64 {
	t.Helper()
	return countWith(t, rt, "meshgate_requests_total", map[string]string{"listener": l, "code": c})
}
