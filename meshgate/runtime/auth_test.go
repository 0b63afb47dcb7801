package runtime

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// TestReplayCacheSurvivesListenerRebuild: a reload that rebuilds a private
// listener (new socket settings) hands its replay cache to the new one, so
// a frame accepted before the reload is refused as a replay after it.
func TestReplayCacheSurvivesListenerRebuild(t *testing.T) {
	ep := backend(t, "A")
	y := strings.Replace(yamlConfig(ep, ""), "kind: private\n", "kind: private\n    auth: {keys: {1: \"replay-test-secret\"}}\n", 1)
	rt := start(t, mustParse(t, y))
	c := mgp.New(0)
	captured, err := c.Sign(nil, &codec.Frame{Cmd: 1, Seq: 1, Body: []byte("pay")}, 1, []byte("replay-test-secret"), uint64(time.Now().UnixMilli()), 77)
	if err != nil {
		t.Fatal(err)
	}
	send := func() uint16 {
		t.Helper()
		nc, err := net.DialTimeout("tcp", rt.Addr("mgp-in").String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(captured); err != nil {
			t.Fatal(err)
		}
		var r codec.Frame
		if err := codec.NewReader(nc, c, 4096).ReadFrame(&r); err != nil {
			t.Fatal(err)
		}
		return r.Result
	}
	if got := send(); got != codec.ResultOK {
		t.Fatalf("first use: result %d", got)
	}
	before := rt.Addr("mgp-in").String()
	y2 := strings.Replace(y, "kind: private\n", "kind: private\n    max_frame_size: 65536\n", 1)
	if err := rt.Reload(mustParse(t, y2)); err != nil {
		t.Fatal(err)
	}
	if rt.Addr("mgp-in").String() == before {
		t.Fatal("listener was not rebuilt")
	}
	if got := send(); got != codec.ResultUnauthenticated {
		t.Fatalf("replay to the rebuilt listener: result %d, want 3", got)
	}
}
