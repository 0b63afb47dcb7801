package resilience

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	grpcmanual "google.golang.org/grpc/resolver/manual"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
)

type backend struct {
	addr  string
	srv   *grpc.Server
	calls atomic.Int64
}

func startBackends(t *testing.T, n int) []*backend {
	t.Helper()
	var bs []*backend
	for range n {
		b := &backend{}
		b.srv = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			b.calls.Add(1)
			return h(ctx, req)
		}))
		healthpb.RegisterHealthServer(b.srv, health.NewServer())
		b.addr = testkit.Serve(t, b.srv, nil)
		bs = append(bs, b)
	}
	return bs
}

func dial(t *testing.T, bs []*backend) *grpc.ClientConn {
	t.Helper()
	r := grpcmanual.NewBuilderWithScheme("mgtest")
	var as []resolver.Address
	for _, b := range bs {
		as = append(as, resolver.Address{Addr: b.addr})
	}
	r.InitialState(resolver.State{Addresses: as})
	return testkit.Dial(t, "mgtest:///u", grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(GRPCServiceConfig))
}

// Through real grpc-go peers: each call lands on the endpoint the Guard
// picked; a stopped backend's calls fail as connect failures, are retried
// on another endpoint, and the endpoint is ejected.
func TestGRPCBalancerFollowsGuard(t *testing.T) {
	bs := startBackends(t, 3)
	cc := dial(t, bs)
	var as []string
	for _, b := range bs {
		as = append(as, b.addr)
	}
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Wait (bounded) until every backend is connected, calling each
	// directly, before the Guard sees any outcome.
	probe := New("probe", LBRoundRobin, as, defaults())
	for _, ep := range probe.Endpoints() {
		for {
			if _, err := client.Check(WithEndpoint(ctx, ep), &healthpb.HealthCheckRequest{}); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("backend %s never reachable", ep.Addr())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	rc := defaults()
	rc.OutlierDetection.ConsecutiveFailures = 2
	// Plain round robin: adaptive weights (tested on their own) may
	// rightly starve an endpoint whose first answers were slow on a loaded
	// machine, and then the stopped backend is never tried.
	rc.AdaptiveWeights.Disabled = true
	g := New("u", LBRoundRobin, as, rc)
	var last *Endpoint
	var lastOutcome Outcome
	call := func(ctx context.Context, ep *Endpoint, _ int) Outcome {
		last = ep
		_, err := client.Check(WithEndpoint(ctx, ep), &healthpb.HealthCheckRequest{})
		lastOutcome = ClassifyGRPC(ctx, err)
		return lastOutcome
	}
	p := pol(config.RouteResilience{Idempotent: true, RetryOn: []string{config.RetryOnConnectFailure, config.RetryOnUnavailable}, MaxAttempts: 3})
	for i := range 30 {
		before := make([]int64, 3)
		for j, b := range bs {
			before[j] = b.calls.Load()
		}
		n, err := g.Do(ctx, uint64(i), p, call)
		if err != nil || n != 0 || lastOutcome != Success {
			t.Fatalf("call %d: %d, %v, %s", i, n, err, lastOutcome)
		}
		if bs[last.index].calls.Load() != before[last.index]+1 {
			t.Fatalf("call %d: picked %s but it was not served there", i, last.addr)
		}
	}
	bs[1].srv.Stop()
	for i := range 60 {
		if _, err := g.Do(ctx, uint64(i), p, call); err != nil || lastOutcome != Success {
			t.Fatalf("call %d after stopping one backend: %v, %s", i, err, lastOutcome)
		}
	}
	if !g.s.eps[1].Ejected() {
		t.Fatalf("stopped backend not ejected (stats %+v)", g.Stats())
	}
	if r := g.Stats().Retries["retry"]; r == 0 || r > 5 {
		t.Fatalf("retries %d: want the few failures on the stopped backend retried elsewhere", r)
	}
}
