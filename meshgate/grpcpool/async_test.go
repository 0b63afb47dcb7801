package grpcpool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// startWho starts one Who call with StartPolicy and returns its answer.
func startWho(t *testing.T, p *Pool, dc *DirectCall, pol *resilience.Policy) (string, error) {
	t.Helper()
	var out []byte
	ch := make(chan error, 2)
	if err := p.StartPolicy(context.Background(), dc, "/test.Svc/Who", 0, time.Now().Add(5*time.Second), pol, []byte{}, &out, func(err error) { ch <- err }); err != nil {
		t.Fatalf("StartPolicy: %v", err)
	}
	err := testkit.Receive(t, ch, 5*time.Second, "call never completed")
	return string(out), err
}

// TestDirectStartPolicy: asynchronous calls through the Guard are
// balanced over the endpoints and accounted (in-flight back to zero,
// latency recorded) as Invoke's; one made before any connection is up
// takes the waiting path on a goroutine and still completes; a policy
// with retries is refused with nothing done.
func TestDirectStartPolicy(t *testing.T) {
	eps := []string{backend(t, "a"), backend(t, "b")}
	p := newPool(t, directUpstream(eps, config.LBRoundRobin, 1))
	pol := resilience.Policy{MaxAttempts: 1}
	var dc DirectCall
	// Not connected yet: the waiting path.
	if got, err := startWho(t, p, &dc, &pol); err != nil || (got != "a" && got != "b") {
		t.Fatalf("first call: %q %v", got, err)
	}
	waitAllConnected(t, p)
	seen := map[string]int{}
	// At least 40 calls, and until both endpoints answered: the adaptive
	// weights may rightly starve an endpoint for a while after a latency
	// spike on a loaded machine (-race), never for long (min weight).
	for i := 0; i < 40 || (len(seen) < 2 && i < 2000); i++ {
		got, err := startWho(t, p, &dc, &pol)
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	if len(seen) != 2 {
		t.Fatalf("spread %v", seen)
	}
	for _, ep := range p.Guard().Endpoints() {
		testkit.Within(t, 5*time.Second, "in-flight back to zero", func() bool { return ep.InFlight() == 0 })
		if ep.Latency() == 0 {
			t.Errorf("endpoint %s: no outcome recorded", ep.Addr())
		}
	}
	retry := resilience.Policy{MaxAttempts: 2}
	var out []byte
	err := p.StartPolicy(context.Background(), &dc, "/test.Svc/Who", 0, time.Time{}, &retry, []byte{}, &out, func(error) { t.Error("callback ran") })
	if !errors.Is(err, resilience.ErrWouldWait) {
		t.Fatalf("retry policy: %v, want ErrWouldWait", err)
	}
	// A deadline already past: the Guard refuses it as Do does.
	ch := make(chan error, 1)
	if err := p.StartPolicy(context.Background(), &dc, "/test.Svc/Who", 0, time.Now().Add(-time.Second), &pol, []byte{}, &out, func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err == nil {
		t.Fatal("expired call succeeded")
	}
}
