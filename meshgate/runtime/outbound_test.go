package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

func legacyServer(t *testing.T) string {
	t.Helper()
	_, addr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{EchoExt: true})
	return addr
}

func grpcConfig(legacyEP, grpcEP string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s, drain_timeout: 5s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
      - {method: /legacy.Legacy/Uppercase, cmd: 2, upstream: legacy}
      - {method: /legacy.Legacy/Fail, cmd: 3, upstream: legacy}
  - name: mgp-in
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 1, method: /demo.Echo/Echo, upstream: demo}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 2}
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, legacyEP, grpcEP)
}

// TestGRPCClientToLegacyServer: grpc-go client → runtime grpc listener
// (outbound) → reference legacy MGP server, and both directions at once.
func TestGRPCClientToLegacyServer(t *testing.T) {
	rt := start(t, mustParse(t, grpcConfig(legacyServer(t), backend(t, "A"))))
	cc := testkit.Client(t, rt.Addr("grpc-in").String())
	ctx := testkit.Context(t, 5*time.Second)
	var out []byte
	if err := cc.Invoke(ctx, "/legacy.Legacy/Uppercase", []byte("via bridge"), &out); err != nil || string(out) != "VIA BRIDGE" {
		t.Fatalf("uppercase: %q %v", out, err)
	}
	// A legacy result comes back as the mapped gRPC status.
	var fb [2]byte
	binary.BigEndian.PutUint16(fb[:], 8)
	err := cc.Invoke(ctx, "/legacy.Legacy/Fail", append(fb[:], "gone"...), &out)
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "gone" {
		t.Fatalf("fail: %v", err)
	}
	if err := cc.Invoke(ctx, "/legacy.Legacy/Nope", []byte{}, &out); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unrouted method: %v", err)
	}
	// gRPC health is served on grpc listeners.
	hc := healthpb.NewHealthClient(testkit.Dial(t, rt.Addr("grpc-in").String()))
	if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
	// Both directions under concurrent load.
	cl := dial(t, rt, "mgp-in", 2)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				var o []byte
				if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte("g"), &o); err != nil || string(o) != "g" {
					bad.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if r, err := call(cl, 1, "m"); err != nil || string(r.Body) != "m" {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d failed calls", bad.Load())
	}
	// Reload keeping the grpc listener: new routes apply.
	y := strings.Replace(grpcConfig(legacyServer(t), backend(t, "B")), "/legacy.Legacy/Echo, cmd: 1", "/legacy.Legacy/Echo, cmd: 2", 1)
	if err := rt.Reload(mustParse(t, y)); err != nil {
		t.Fatal(err)
	}
	if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte("now upper"), &out); err != nil || string(out) != "NOW UPPER" {
		t.Fatalf("after reload: %q %v", out, err)
	}
}

// TestReloadUnderLoadGRPCToPrivate: gRPC clients keep calling while reloads
// move the private upstream between two legacy servers: 0 failures.
func TestReloadUnderLoadGRPCToPrivate(t *testing.T) {
	lA, lB, demoEP := legacyServer(t), legacyServer(t), backend(t, "A")
	rt := start(t, mustParse(t, grpcConfig(lA, demoEP)))
	cc := testkit.Client(t, rt.Addr("grpc-in").String())
	stop := make(chan struct{})
	wait := testkit.Load(6, stop, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var o []byte
		if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte("r"), &o); err != nil || string(o) != "r" {
			return fmt.Errorf("%q %v", o, err)
		}
		return nil
	})
	eps := []string{lB, lA}
	for i := 0; i < 6; i++ {
		time.Sleep(50 * time.Millisecond)
		if err := rt.Reload(mustParse(t, grpcConfig(eps[i%2], demoEP))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	okN := testkit.NoFailures(t, wait)
	t.Logf("%d gRPC→private calls across 6 reloads, 0 failed", okN)
}
