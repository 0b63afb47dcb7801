//go:build linux

package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
)

// TestIdleMGPConnsHoldNoGoroutine runs the real binary: 300 MGP clients
// each send a heartbeat and stay connected; once idle past the private
// listener's grace (200 ms) the process holds far fewer goroutines than
// connections (go_goroutines: each connection is parked in the
// listener's parker), and every connection is served again (a heartbeat
// wakes it). Before the parker each idle connection held a goroutine.
func TestIdleMGPConnsHoldNoGoroutine(t *testing.T) {
	const n = 300
	cfg := `listeners:
  - name: clients
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: g}]
upstreams:
  - {name: g, protocol: grpc, endpoints: ["127.0.0.1:1"]}
`
	mg := harness.StartMeshgate(t, cfg)
	harness.WaitHTTP200(t, 20*time.Second, mg.AdminURL("/healthz"))
	base, err := mg.Metric("go_goroutines", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := mgp.New(0)
	conns := make([]net.Conn, n)
	rds := make([]*codec.Reader, n)
	t.Cleanup(func() {
		for _, nc := range conns {
			if nc != nil {
				_ = nc.Close()
			}
		}
	})
	beat := func(i int, seq uint32) error {
		b, _ := c.Append(nil, &codec.Frame{Cmd: 1, Seq: seq, Flags: codec.FlagHeartbeat})
		_ = conns[i].SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conns[i].Write(b); err != nil {
			return err
		}
		var f codec.Frame
		if err := rds[i].ReadFrame(&f); err != nil {
			return err
		}
		if f.Seq != seq || f.Flags&codec.FlagResponse == 0 {
			return fmt.Errorf("reply %+v", f)
		}
		return nil
	}
	for i := range conns {
		nc, err := net.DialTimeout("tcp", mg.Addr("clients"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns[i], rds[i] = nc, codec.NewReader(nc, c, 256)
		if err := beat(i, 1); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	harness.Eventually(t, 10*time.Second, "idle connections without goroutines", func() error {
		g, err := mg.Metric("go_goroutines", nil)
		if err != nil {
			return err
		}
		if g > base+n/10 {
			return fmt.Errorf("%v goroutines with %d idle connections (%v before them)", g, n, base)
		}
		return nil
	})
	for i := range conns {
		if err := beat(i, 2); err != nil {
			t.Fatalf("conn %d after idling: %v", i, err)
		}
	}
}
