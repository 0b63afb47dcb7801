package runtime

import (
	"net"
	"strings"
	"testing"
)

// TestBoundAddrsPortZeroAcrossReloads: listeners, admin and health on port
// 0 each get their own port; BoundAddrs reports them; a reload that keeps
// "127.0.0.1:0" keeps every socket (no listener collides with another on
// the shared string), a listener added on ":0" gets a new port, and a
// reload may pin a listener to the address it was bound to. Another
// listener asking for that address while the first keeps it is rejected.
func TestBoundAddrsPortZeroAcrossReloads(t *testing.T) {
	ep := backend(t, "A")
	two := `
  - name: second
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 9, method: /test.Svc/Who, upstream: demo}]`
	withHealth := func(y string) string {
		return strings.Replace(y, `admin: {address: "127.0.0.1:0"}`, `admin: {address: "127.0.0.1:0", health_address: "127.0.0.1:0"}`, 1)
	}
	rt := start(t, mustParse(t, withHealth(yamlConfig(ep, two))))
	b := rt.BoundAddrs()
	if b.Generation != 1 || len(b.Listeners) != 2 {
		t.Fatalf("at start: %+v", b)
	}
	seen := map[string]string{}
	for name, a := range map[string]string{"mgp-in": b.Listeners["mgp-in"], "second": b.Listeners["second"], "admin": b.Admin, "health": b.Health} {
		_, port, err := net.SplitHostPort(a)
		if err != nil || port == "0" {
			t.Fatalf("%s bound to %q (%v)", name, a, err)
		}
		if prev, dup := seen[a]; dup {
			t.Fatalf("%s and %s both report %s", name, prev, a)
		}
		seen[a] = name
	}
	if got := rt.Addr("second").String(); got != b.Listeners["second"] {
		t.Fatalf("Addr(second) = %s, BoundAddrs says %s", got, b.Listeners["second"])
	}

	// Same config again: both keep their sockets.
	if err := rt.Reload(mustParse(t, withHealth(yamlConfig(ep, two)))); err != nil {
		t.Fatal(err)
	}
	b2 := rt.BoundAddrs()
	if b2.Generation != 2 || b2.Listeners["mgp-in"] != b.Listeners["mgp-in"] || b2.Listeners["second"] != b.Listeners["second"] || b2.Admin != b.Admin || b2.Health != b.Health {
		t.Fatalf("reload moved a socket: %+v -> %+v", b, b2)
	}

	// A third listener on :0 gets a port of its own.
	three := two + `
  - name: third
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 9, method: /test.Svc/Who, upstream: demo}]`
	if err := rt.Reload(mustParse(t, withHealth(yamlConfig(ep, three)))); err != nil {
		t.Fatal(err)
	}
	b3 := rt.BoundAddrs()
	if tp := b3.Listeners["third"]; tp == "" || tp == b3.Listeners["second"] || tp == b3.Listeners["mgp-in"] || strings.HasSuffix(tp, ":0") {
		t.Fatalf("third: %+v", b3)
	}
	cl := dial(t, rt, "third", 1)
	if r, err := call(cl, 9, ""); err != nil || string(r.Body) != "A" {
		t.Fatalf("third listener: %+v %v", r, err)
	}

	// Another listener asking for second's bound address while second
	// keeps it: rejected, nothing changes.
	pinned := b3.Listeners["second"]
	clash := strings.Replace(three, "name: third\n    kind: private\n    address: 127.0.0.1:0", "name: third\n    kind: private\n    address: "+pinned, 1)
	if err := rt.Reload(mustParse(t, withHealth(yamlConfig(ep, clash)))); err == nil {
		t.Fatalf("third on second's address %s accepted", pinned)
	}
	if b4 := rt.BoundAddrs(); b4.Generation != b3.Generation || b4.Listeners["third"] != b3.Listeners["third"] {
		t.Fatalf("rejected reload changed addresses: %+v -> %+v", b3, b4)
	}

	// Pin second where it is (and change its routes so it is rebuilt):
	// same socket, the reload is applied.
	pin := strings.Replace(three, "name: second\n    kind: private\n    address: 127.0.0.1:0\n    routes: [{cmd: 9,", "name: second\n    kind: private\n    address: "+pinned+"\n    max_frame_size: 65536\n    routes: [{cmd: 8,", 1)
	if pin == three {
		t.Fatal("test config edit did not apply")
	}
	if err := rt.Reload(mustParse(t, withHealth(yamlConfig(ep, pin)))); err != nil {
		t.Fatalf("pinning second to its bound address %s: %v", pinned, err)
	}
	if b5 := rt.BoundAddrs(); b5.Listeners["second"] != pinned {
		t.Fatalf("second moved from %s to %s", pinned, b5.Listeners["second"])
	}
	// The replaced server may still take a connection or two while it
	// drains: a new connection is soon served by the new routes.
	waitFor(t, func() bool {
		cl := dial(t, rt, "second", 1)
		defer cl.Close()
		r, err := call(cl, 8, "")
		return err == nil && r.Result == 0 && string(r.Body) == "A"
	})
}
