package runtime

import (
	"context"
	"runtime/metrics"
	"testing"
	"time"

	"google.golang.org/grpc"
)

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestGRPCListenerStreamWorkers checks that a grpc listener serves calls on
// grpc-go's stream workers: 200 sequential calls gRPC → private (the
// reference legacy server answers inline, the gRPC client starts no
// goroutine per unary call). A call without a deadline also starts the
// listener's first-message receive helper (limits.recv_timeout, package
// outbound): one goroutine per call; a call whose deadline is shorter than
// recv_timeout does not. Before: one goroutine per call for the handler
// and one for the helper (400 in all, either way).
func TestGRPCListenerStreamWorkers(t *testing.T) {
	rt := start(t, mustParse(t, grpcConfig(legacyServer(t), backend(t, "A"))))
	cc := grpcClient(t, rt.Addr("grpc-in").String())
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		streamWorkers(t, cc, ctx, 0)
	})
	t.Run("no_deadline", func(t *testing.T) {
		streamWorkers(t, cc, context.Background(), 1)
	})
}

// streamWorkers makes 200 sequential calls and fails when more than
// perCall goroutines per call (+10 %) were started.
func streamWorkers(t *testing.T, cc *grpc.ClientConn, ctx context.Context, perCall int) {
	call := func() {
		var out []byte
		if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte("x"), &out); err != nil || string(out) != "x" {
			t.Fatalf("echo: %q %v", out, err)
		}
	}
	for i := 0; i < 20; i++ { // connections and workers up
		call()
	}
	const n = 200
	before := goroutinesCreated()
	for i := 0; i < n; i++ {
		call()
	}
	if created, limit := goroutinesCreated()-before, uint64(perCall*n+n/10); created > limit {
		t.Fatalf("%d goroutines started for %d sequential calls; want at most %d (handlers on stream workers)", created, n, limit)
	}
}
