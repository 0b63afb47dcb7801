package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

var onePolicy = resilience.PolicyFor(config.RouteResilience{})

// startCall runs one StartPolicy and waits for its callback; the reply is
// copied out inside it.
func startCall(t *testing.T, p *upstream.PrivatePool, c *upstream.Call, req *codec.Frame, d time.Duration) (body []byte, result uint16, err error) {
	t.Helper()
	ch := make(chan struct{})
	if serr := p.StartPolicy(c, req, time.Now().Add(d), &onePolicy, func(resp *codec.Frame, e error) {
		if e == nil {
			body, result = append([]byte(nil), resp.Body...), resp.Result
		}
		err = e
		close(ch)
	}); serr != nil {
		t.Fatalf("StartPolicy: %v", serr)
	}
	testkit.Receive(t, ch, 10*time.Second, "callback never called")
	return body, result, err
}

// StartPolicy carries many concurrent requests out of order over several
// endpoints, each reply to its own request, with the per-endpoint
// accounting DoPolicy keeps.
func TestStartPolicyConcurrent(t *testing.T) {
	_, addrs := backends(t, 2, legacy.ServerOptions{Jitter: 300 * time.Microsecond})
	p := newPool(t, config.LBRoundRobin, addrs, nil)
	const workers, each = 8, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c upstream.Call
			for i := range each {
				want := fmt.Sprint(w, "/", i)
				body, res, err := startCall(t, p, &c, &codec.Frame{Cmd: legacy.CmdEcho, UIN: uint64(i), Body: []byte(want)}, 5*time.Second)
				if err != nil || res != codec.ResultOK || string(body) != want {
					t.Errorf("request %s: %q %d %v", want, body, res, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := p.Stats()
	var reqs uint64
	for i, e := range p.Endpoints() {
		reqs += e.Requests()
		if e.InFlight() != 0 || e.Latency() <= 0 || st.PerEP[i].Requests == 0 {
			t.Fatalf("endpoint %s: in flight %d, latency %v, requests %d", e.Addr(), e.InFlight(), e.Latency(), st.PerEP[i].Requests)
		}
	}
	if reqs != workers*each || st.InFlight != 0 {
		t.Fatalf("requests %d (want %d), in flight %d", reqs, workers*each, st.InFlight)
	}
}

// A reply later than the deadline, a backend that dies under a request
// and an upstream with no endpoint left end with DoPolicy's errors, and
// the endpoint's accounting returns to rest.
func TestStartPolicyFailures(t *testing.T) {
	ss, addrs := backends(t, 1, legacy.ServerOptions{})
	p := newPool(t, config.LBRoundRobin, addrs, nil)
	e := p.Endpoints()[0]
	var c upstream.Call
	t0 := time.Now()
	_, _, err := startCall(t, p, &c, &codec.Frame{Cmd: legacy.CmdSlow, Body: []byte{0, 0, 0, 200}}, 30*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(upstream.Status(context.Background(), err)) != codes.DeadlineExceeded {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if el := time.Since(t0); el < 30*time.Millisecond || el > 150*time.Millisecond {
		t.Fatalf("deadline completed after %v, want 30ms (+ timer latency)", el)
	}
	if e.Failures() != 1 || e.InFlight() != 0 {
		t.Fatalf("failures %d, in flight %d", e.Failures(), e.InFlight())
	}

	// The backend dies under a slow request: a connection error, at once.
	errc := make(chan error, 1)
	if err := p.StartPolicy(&c, &codec.Frame{Cmd: legacy.CmdSlow, Body: []byte{0, 0, 0x13, 0x88}}, time.Now().Add(5*time.Second), &onePolicy,
		func(_ *codec.Frame, err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	testkit.Await(5*time.Second, func() bool { return e.InFlight() == 1 })
	t0 = time.Now()
	ss[0].Close()
	err = testkit.Receive(t, errc, 5*time.Second, "no completion after the backend died")
	if status.Code(upstream.Status(context.Background(), err)) != codes.Unavailable {
		t.Fatalf("want unavailable, got %v", err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("failure took %v", el)
	}
	// Ejected: refused at once, on the caller's goroutine.
	testkit.Await(5*time.Second, func() bool { return p.Stats().Healthy == 0 })
	called := false
	if err := p.StartPolicy(&c, &codec.Frame{Cmd: legacy.CmdEcho}, time.Now().Add(time.Second), &onePolicy, func(_ *codec.Frame, err error) {
		called = true
		if !errors.Is(err, upstream.ErrNoHealthy) {
			t.Errorf("want ErrNoHealthy, got %v", err)
		}
	}); err != nil || !called {
		t.Fatalf("StartPolicy = %v, called back %v", err, called)
	}
	if e.InFlight() != 0 || p.Guard().Stats().RetriesInFlight != 0 {
		t.Fatalf("in flight %d, retries held %d", e.InFlight(), p.Guard().Stats().RetriesInFlight)
	}
}

// A policy with retries is left to DoPolicy, untouched.
func TestStartPolicyDefers(t *testing.T) {
	_, addrs := backends(t, 1, legacy.ServerOptions{})
	p := newPool(t, config.LBRoundRobin, addrs, nil)
	pol := resilience.PolicyFor(config.RouteResilience{Idempotent: true, MaxAttempts: 2, RetryOn: []string{config.RetryOnUnavailable}})
	var c upstream.Call
	if err := p.StartPolicy(&c, &codec.Frame{Cmd: legacy.CmdEcho}, time.Time{}, &pol, func(*codec.Frame, error) {
		t.Error("called back")
	}); !errors.Is(err, resilience.ErrWouldWait) {
		t.Fatalf("want ErrWouldWait, got %v", err)
	}
	if r := p.Endpoints()[0].Requests(); r != 0 {
		t.Fatalf("sent %d", r)
	}
}

// BenchmarkPrivatePoolStart is BenchmarkPrivatePoolDo's plain case
// through StartPolicy (the reply read in the callback, no copy).
func BenchmarkPrivatePoolStart(b *testing.B) {
	_, addr := testkit.Legacy(b, nil, nil, legacy.ServerOptions{})
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, Connections: 1}
	p := pooltest.Private(b, u.WithDefaults(), nil, 1)
	body := make([]byte, 1024)
	ch := make(chan error, 1)
	done := func(_ *codec.Frame, err error) { ch <- err }
	var c upstream.Call
	f := codec.Frame{Cmd: legacy.CmdEcho, UIN: 1, Body: body}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.StartPolicy(&c, &f, time.Now().Add(time.Second), &onePolicy, done); err != nil {
			b.Fatal(err)
		}
		if err := <-ch; err != nil {
			b.Fatal(err)
		}
	}
}
