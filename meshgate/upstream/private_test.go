package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startLegacy(t *testing.T, addr string, o legacy.ServerOptions) *legacy.Server {
	t.Helper()
	s, _ := testkit.Legacy(t, testkit.Listen(t, addr), nil, o)
	return s
}

func newPool(t *testing.T, lb string, addrs []string, reg prometheus.Registerer) *upstream.PrivatePool {
	t.Helper()
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: addrs, LB: lb, Connections: 2}
	return pooltest.Private(t, u.WithDefaults(), reg, len(addrs), pooltest.FastBackoff())
}

func backends(t *testing.T, n int, o legacy.ServerOptions) ([]*legacy.Server, []string) {
	var ss []*legacy.Server
	var addrs []string
	for range n {
		s := startLegacy(t, "127.0.0.1:0", o)
		ss = append(ss, s)
		addrs = append(addrs, s.Addr().String())
	}
	return ss, addrs
}

func call(ctx context.Context, p *upstream.PrivatePool, uin uint64, body string) (*codec.Frame, error) {
	return p.Do(ctx, &codec.Frame{Cmd: legacy.CmdEcho, UIN: uin, Body: []byte(body)})
}

func TestRoundRobinAndLeastRequestSpread(t *testing.T) {
	for _, lb := range []string{config.LBRoundRobin, config.LBLeastRequest} {
		t.Run(lb, func(t *testing.T) {
			ss, addrs := backends(t, 3, legacy.ServerOptions{})
			// The base policies' spread: adaptive weights (which may
			// rightly starve an endpoint whose first answer was slow on a
			// loaded machine) have their own tests in package resilience.
			u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: addrs, LB: lb, Connections: 2}
			u.Resilience.AdaptiveWeights.Disabled = true
			p := pooltest.Private(t, u.WithDefaults(), nil, len(addrs), pooltest.FastBackoff())
			ctx := testkit.Context(t, 5*time.Second)
			for i := range 300 {
				r, err := call(ctx, p, 1, fmt.Sprint(i))
				if err != nil || string(r.Body) != fmt.Sprint(i) {
					t.Fatalf("%v %v", r, err)
				}
			}
			for i, s := range ss {
				n := s.Stats().Requests
				if n < 50 {
					t.Fatalf("backend %d got %d of 300 requests", i, n)
				}
			}
			st := p.Stats()
			if st.Endpoints != 3 || st.Healthy != 3 || st.Conns != 6 || st.InFlight != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestConsistentHashStability(t *testing.T) {
	ss, addrs := backends(t, 4, legacy.ServerOptions{})
	p := newPool(t, config.LBConsistentHash, addrs, nil)
	const users = 2000
	before := make([]string, users)
	for u := range users {
		before[u] = p.Endpoint(uint64(u))
	}
	// Stable: same uin, same endpoint; and the spread is reasonable.
	count := map[string]int{}
	for u := range users {
		if got := p.Endpoint(uint64(u)); got != before[u] {
			t.Fatalf("uin %d moved without a change", u)
		}
		count[before[u]]++
	}
	for a, n := range count {
		if n < users/4/3 {
			t.Fatalf("endpoint %s owns only %d of %d users", a, n, users)
		}
	}
	// Requests really go where Endpoint says.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for u := range 40 {
		if _, err := call(ctx, p, uint64(u), "x"); err != nil {
			t.Fatal(err)
		}
	}
	// Eject endpoint 1: only its users move.
	victim := addrs[1]
	ss[1].Close()
	testkit.Await(5*time.Second, func() bool { return p.Stats().Healthy == 3 })
	moved := 0
	for u := range users {
		got := p.Endpoint(uint64(u))
		if before[u] != victim && got != before[u] {
			t.Fatalf("uin %d moved from healthy %s to %s", u, before[u], got)
		}
		if before[u] == victim {
			if got == victim || got == "" {
				t.Fatalf("uin %d still on ejected endpoint", u)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("victim owned no users")
	}
	// It comes back: its users return.
	startLegacy(t, victim, legacy.ServerOptions{})
	testkit.Await(5*time.Second, func() bool { return p.Stats().Healthy == 4 })
	for u := range users {
		if got := p.Endpoint(uint64(u)); got != before[u] {
			t.Fatalf("uin %d on %s after recovery, want %s", u, got, before[u])
		}
	}
}

func TestBackendKilledThenRecovers(t *testing.T) {
	reg := prometheus.NewRegistry()
	ss, addrs := backends(t, 1, legacy.ServerOptions{})
	p := newPool(t, config.LBRoundRobin, addrs, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A slow request is in flight when the backend dies.
	errc := make(chan error, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		_, err := p.Do(rctx, &codec.Frame{Cmd: legacy.CmdSlow, Body: []byte{0, 0, 0x13, 0x88}})
		errc <- err
	}()
	for p.Stats().InFlight == 0 {
		time.Sleep(time.Millisecond)
	}
	t0 := time.Now()
	ss[0].Close()
	err := <-errc
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want connection error before the deadline, got %v", err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("failure took %v", el)
	}
	// Ejected: new requests fail fast with ErrNoHealthy.
	testkit.Await(5*time.Second, func() bool { return p.Stats().Healthy == 0 })
	if _, err := call(ctx, p, 1, "x"); !errors.Is(err, upstream.ErrNoHealthy) {
		t.Fatalf("want ErrNoHealthy, got %v", err)
	}
	// The backend returns on the same address; the pool reconnects.
	startLegacy(t, addrs[0], legacy.ServerOptions{})
	if err := p.WaitHealthy(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if r, err := call(ctx, p, 1, "back"); err != nil || string(r.Body) != "back" {
		t.Fatalf("after recovery: %v %v", r, err)
	}
	if n := testutil.ToFloat64(mustCounter(t, reg, "meshgate_private_upstream_ejections_total")); n < 1 {
		t.Fatalf("ejections %v", n)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return mf.Metric[0].GetCounter().GetValue() })
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func TestDuplicateAndLateRepliesCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, addrs := backends(t, 1, legacy.ServerOptions{DuplicateRate: 1})
	p := newPool(t, config.LBRoundRobin, addrs, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 20 {
		if r, err := call(ctx, p, 0, fmt.Sprint(i)); err != nil || string(r.Body) != fmt.Sprint(i) {
			t.Fatalf("%v %v", r, err)
		}
	}
	short, c2 := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := p.Do(short, &codec.Frame{Cmd: legacy.CmdSlow, Body: []byte{0, 0, 0, 100}})
	c2()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline, got %v", err)
	}
	testkit.Await(3*time.Second, func() bool { st := p.Stats(); return st.Unknown >= 20 && st.Late >= 1 })
	st := p.Stats()
	// 20 duplicates are unknown; the slow reply is late and its duplicate unknown.
	if st.Unknown != 21 || st.Late != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n := testutil.ToFloat64(mustCounter(t, reg, "meshgate_private_upstream_unknown_seq_replies_total")); n != 21 {
		t.Fatalf("metric %v", n)
	}
}

func TestNoEndpointsListening(t *testing.T) {
	addr := testkit.FreeAddr(t)
	u := config.Upstream{Name: "dead", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, LB: config.LBConsistentHash}
	p := pooltest.Private(t, u.WithDefaults(), nil, 0, upstream.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	ctx := testkit.Context(t, 5*time.Second)
	if _, err := call(ctx, p, 9, "x"); !errors.Is(err, upstream.ErrNoHealthy) {
		t.Fatalf("want ErrNoHealthy, got %v", err)
	}
	if _, err := upstream.NewPrivatePool(config.Upstream{Name: "g", Protocol: config.ProtoGRPC, Endpoints: []string{addr}}.WithDefaults(), mgp.New(0), nil, nil); !errors.Is(err, upstream.ErrConfig) {
		t.Fatalf("grpc upstream accepted: %v", err)
	}
}

// TestStress100k: 100k requests from 128 goroutines over 3 endpoints × 3
// connections, backends replying after random delays (out of order); every
// reply must carry its own request's unique body and uin.
func TestStress100k(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	_, addrs := backends(t, 3, legacy.ServerOptions{Jitter: 500 * time.Microsecond})
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: addrs, LB: config.LBConsistentHash, Connections: 3}
	p := pooltest.Private(t, u.WithDefaults(), nil, 3)
	ctx := testkit.Context(t, 60*time.Second)
	var next, bad, errs atomic.Int64
	var wg sync.WaitGroup
	for range 128 {
		wg.Go(func() {
			var body []byte
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				body = legacy.RequestBody(body, uint64(i), 32)
				r, err := p.Do(ctx, &codec.Frame{Cmd: legacy.CmdEcho, UIN: uint64(i), Body: body})
				if err != nil {
					errs.Add(1)
					continue
				}
				if string(r.Body) != string(body) || r.UIN != uint64(i) {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	st := p.Stats()
	t.Logf("%d requests: per endpoint %+v", n, st.PerEP)
	if bad.Load() != 0 || errs.Load() != 0 || st.Unknown != 0 || st.Late != 0 {
		t.Fatalf("%d mismatched, %d errors; %+v", bad.Load(), errs.Load(), st)
	}
}

func TestOnewaySend(t *testing.T) {
	ss, addrs := backends(t, 2, legacy.ServerOptions{})
	p := newPool(t, config.LBRoundRobin, addrs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 10 {
		if err := p.Send(ctx, &codec.Frame{Cmd: legacy.CmdEcho, Body: []byte("fire")}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Await(3*time.Second, func() bool { return ss[0].Stats().Oneway+ss[1].Stats().Oneway >= 10 })
	if n := ss[0].Stats().Oneway + ss[1].Stats().Oneway; n != 10 || ss[0].Stats().Replies+ss[1].Stats().Replies != 0 {
		t.Fatalf("oneway delivered %d", n)
	}
	if st := p.Stats(); st.Unknown != 0 {
		t.Fatalf("oneway answered: %+v", st)
	}
}
