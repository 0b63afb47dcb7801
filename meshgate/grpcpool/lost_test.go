package grpcpool

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcdirect"
)

// TestDirectConnectionsLost: a direct connection the server drops is
// counted in meshgate_grpc_upstream_connections_lost_total{upstream,
// reason} on the pool's Registerer (a real grpc-go server's GracefulStop:
// GOAWAY), and a second pool of the same name on the same registry adds to
// the same series.
func TestDirectConnectionsLost(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := range 2 {
		s := &testkit.Stub{}
		addr := s.Start(t)
		p, err := New(directUpstream([]string{addr}, config.LBRoundRobin, 1), Options{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := p.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		s.Server.GracefulStop()
		testkit.Within(t, 10*time.Second, "the loss counted", func() bool {
			return testutil.ToFloat64(lostCounterOf(t, reg, "u", grpcdirect.LostGoAway)) == float64(i+1)
		})
		p.Close()
	}
}

func lostCounterOf(t *testing.T, reg prometheus.Registerer, upstream, reason string) prometheus.Counter {
	t.Helper()
	vec, err := lostCounter(reg, upstream)
	if err != nil {
		t.Fatal(err)
	}
	return vec.WithLabelValues(reason)
}
