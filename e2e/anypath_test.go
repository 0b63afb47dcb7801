package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestAnyListenerToAnyUpstream runs the real binary with the two paths
// that need no protocol conversion: a private listener proxying frames to
// the reference legacy server (cmd rewritten, an unknown extension below
// 0x8000 carried both ways, a failed result back unchanged) and a gRPC
// listener proxying calls to a grpc-go server (method rewritten).
func TestAnyListenerToAnyUpstream(t *testing.T) {
	be := testkit.Demo(t)
	_, ls := testkit.Legacy(t, nil, nil, legacy.ServerOptions{EchoExt: true})
	mg := harness.StartMeshgate(t, fmt.Sprintf(`
listeners:
  - name: p2p
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 70, upstream: legacy, rewrite_cmd: 2}
      - {cmd: 3, upstream: legacy}
  - name: g2g
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: /shout.S/Loud, upstream: demo, rewrite_method: /demo.Echo/Upper}
      - {method: /demo.Echo/*, upstream: demo}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q]}
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, ls, be), harness.WaitReady(10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cl := testkit.LegacyClient(t, mg.Addr("p2p"), legacy.ClientOptions{Conns: 1})
	ext := []codec.Ext{{Key: 0x0123, Value: []byte("opaque")}, {Key: 0x8002, Value: []byte("app")}}
	r, err := cl.Call(ctx, 70, 99, []byte("hello"), ext)
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != 0 || string(r.Body) != "HELLO" || r.UIN != 99 {
		t.Fatalf("private→private: result %d body %q uin %d", r.Result, r.Body, r.UIN)
	}
	for _, e := range ext {
		if v, ok := r.ExtValue(e.Key); !ok || !bytes.Equal(v, e.Value) {
			t.Errorf("ext %#x came back as %q, %v", e.Key, v, ok)
		}
	}
	r, err = cl.Call(ctx, 3, 1, append([]byte{0, 120}, "nope"...), nil)
	if msg, _ := r.ExtValue(codec.ExtErrorMsg); err != nil || r.Result != 120 || string(msg) != "nope" {
		t.Fatalf("private→private failure: %v result %d msg %q", err, r.Result, msg)
	}

	cc := testkit.Client(t, mg.Addr("g2g"))
	var out []byte
	if err := cc.Invoke(ctx, "/shout.S/Loud", []byte("quiet"), &out); err != nil || string(out) != "QUIET" {
		t.Fatalf("gRPC→gRPC rewritten: %q, %v", out, err)
	}
	if err := cc.Invoke(ctx, demo.MethodEcho, []byte("same"), &out); err != nil || string(out) != "same" {
		t.Fatalf("gRPC→gRPC: %q, %v", out, err)
	}
}
