package runtime

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// TestAbortedReloadKeepsReplacedListener: a reload that replaces a
// listener (max_frame_size changes, same address) and then fails later in
// staging (a second listener's port is taken) is rejected, and the old
// listener still accepts new connections and answers. (Before the socket
// hand-off the old socket was closed during staging and never reopened.)
func TestAbortedReloadKeepsReplacedListener(t *testing.T) {
	ep := backend(t, "A")
	rt := start(t, mustParse(t, yamlConfig(ep, "")))
	addr := rt.Addr("mgp-in").String()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	y := strings.Replace(yamlConfig(ep, `
  - name: second
    kind: private
    address: `+taken.Addr().String()+`
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]`), "kind: private\n", "kind: private\n    max_frame_size: 65536\n", 1)
	err = rt.Reload(mustParse(t, y))
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "listeners[1]") {
		t.Fatalf("reload: %v, want rejected naming listeners[1]", err)
	}
	if got := rt.Addr("mgp-in").String(); got != addr {
		t.Fatalf("listener moved to %s, want %s", got, addr)
	}
	if rt.Config().Listeners[0].MaxFrameSize != 0 {
		t.Fatal("rejected config was stored")
	}
	cl := dial(t, rt, "mgp-in", 1)
	if r, err := call(cl, 1, "still here"); err != nil || string(r.Body) != "still here" {
		t.Fatalf("old listener after aborted reload: %+v %v", r, err)
	}
	// The same reload without the conflict commits on the same socket.
	taken.Close()
	if err := rt.Reload(mustParse(t, y)); err != nil {
		t.Fatal(err)
	}
	if got := rt.Addr("mgp-in").String(); got != addr {
		t.Fatalf("replaced listener on %s, want %s", got, addr)
	}
	cl2 := dial(t, rt, "mgp-in", 1)
	if r, err := call(cl2, 1, "new"); err != nil || string(r.Body) != "new" {
		t.Fatalf("replaced listener: %+v %v", r, err)
	}
}
