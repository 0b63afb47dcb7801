package upstream_test

import (
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/stream"
)

// TestOpenStreamCountsInFlight: an open stream exchange counts as a request
// in flight on its endpoint (what least_request balances on) until it
// ends, so long streams steer new calls to other endpoints.
func TestOpenStreamCountsInFlight(t *testing.T) {
	_, addrs := backends(t, 1, legacy.ServerOptions{})
	p := newPool(t, config.LBLeastRequest, addrs, nil)
	ep := p.Endpoints()[0]
	s, err := p.OpenStream(legacy.CmdEcho, 7, []codec.Ext{{Key: 0x8001, Value: []byte("x")}}, stream.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n := ep.InFlight(); n != 1 {
		t.Fatalf("in flight with a stream open: %d", n)
	}
	s.Cancel()
	s.Cancel() // once only
	if n := ep.InFlight(); n != 0 {
		t.Fatalf("in flight after the stream ended: %d", n)
	}
}
