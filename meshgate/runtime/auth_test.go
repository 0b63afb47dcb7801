package runtime

import (
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestReplayAcrossListeners: a frame accepted on one private listener is a
// replay on another listener with the same key; a listener whose key id 1
// has another secret keeps its own nonces.
func TestReplayAcrossListeners(t *testing.T) {
	ep := backend(t, "A")
	y := strings.Replace(yamlConfig(ep, `
  - name: twin
    kind: private
    address: 127.0.0.1:0
    auth: {keys: {1: "shared-secret-xyz"}}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]
  - name: other
    kind: private
    address: 127.0.0.1:0
    auth: {keys: {1: "another-secret-xyz"}}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]`), "kind: private\n", "kind: private\n    auth: {keys: {1: \"shared-secret-xyz\"}}\n", 1)
	rt := start(t, mustParse(t, y))
	c := mgp.New(0)
	now := uint64(time.Now().UnixMilli())
	sign := func(secret string) []byte {
		b, err := c.Sign(nil, &codec.Frame{Cmd: 1, Seq: 1, Body: []byte("x")}, 1, []byte(secret), now, 5)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	captured := sign("shared-secret-xyz")
	if got := testkit.SendOnce(t, rt.Addr("mgp-in").String(), captured); got != codec.ResultOK {
		t.Fatalf("first use: %d", got)
	}
	if got := testkit.SendOnce(t, rt.Addr("twin").String(), captured); got != codec.ResultUnauthenticated {
		t.Fatalf("replay on a listener with the same key: result %d, want 3", got)
	}
	if got := testkit.SendOnce(t, rt.Addr("other").String(), sign("another-secret-xyz")); got != codec.ResultOK {
		t.Fatalf("same key id and nonce under another secret: result %d", got)
	}
}

// TestReplayCacheSurvivesListenerRebuild: a reload that rebuilds a private
// listener (new socket settings) keeps its nonces, so a frame accepted
// before the reload is refused as a replay after it.
func TestReplayCacheSurvivesListenerRebuild(t *testing.T) {
	ep := backend(t, "A")
	y := strings.Replace(yamlConfig(ep, ""), "kind: private\n", "kind: private\n    auth: {keys: {1: \"replay-test-secret\"}}\n", 1)
	rt := start(t, mustParse(t, y))
	c := mgp.New(0)
	captured, err := c.Sign(nil, &codec.Frame{Cmd: 1, Seq: 1, Body: []byte("pay")}, 1, []byte("replay-test-secret"), uint64(time.Now().UnixMilli()), 77)
	if err != nil {
		t.Fatal(err)
	}
	send := func() uint16 { t.Helper(); return testkit.SendOnce(t, rt.Addr("mgp-in").String(), captured) }
	if got := send(); got != codec.ResultOK {
		t.Fatalf("first use: result %d", got)
	}
	srvOf := func() server { rt.mu.Lock(); defer rt.mu.Unlock(); return rt.listeners["mgp-in"].srv }
	before := srvOf()
	y2 := strings.Replace(y, "kind: private\n", "kind: private\n    max_frame_size: 65536\n", 1)
	if err := rt.Reload(mustParse(t, y2)); err != nil {
		t.Fatal(err)
	}
	if srvOf() == before {
		t.Fatal("listener was not rebuilt")
	}
	if got := send(); got != codec.ResultUnauthenticated {
		t.Fatalf("replay to the rebuilt listener: result %d, want 3", got)
	}
}
