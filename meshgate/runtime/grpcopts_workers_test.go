package runtime

import (
	"context"
	"runtime/metrics"
	"testing"
	"time"
)

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestGRPCListenerStreamWorkers checks that a grpc listener serves calls on
// grpc-go's stream workers: 200 sequential calls gRPC → private (the
// reference legacy server answers inline, the gRPC client starts no
// goroutine per unary call). The only goroutine left per call is the
// listener's first-message receive helper (limits.recv_timeout, package
// outbound); without grpc.NumStreamWorkers grpc-go starts one more per
// call for the handler (≥ 400 in all).
func TestGRPCListenerStreamWorkers(t *testing.T) {
	rt := start(t, mustParse(t, grpcConfig(legacyServer(t), backend(t, "A"))))
	cc := grpcClient(t, rt.Addr("grpc-in").String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
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
	if created, limit := goroutinesCreated()-before, uint64(n+n/10); created > limit {
		t.Fatalf("%d goroutines started for %d sequential calls; want at most %d (handlers on stream workers)", created, n, limit)
	}
}
