package migrate

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/shadow"
)

// GRPCShadow against a real grpc-go server through a real pool: uin and
// caller travel as metadata, a status maps to the private result space, a
// shadow timeout is an error outcome, a retired pool skips.
func TestGRPCShadowRealPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := demo.NewServer()
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	p, err := grpcpool.New(config.Upstream{Name: "new", Protocol: config.ProtoGRPC, Endpoints: []string{ln.Addr().String()}, Connections: 1}, grpcpool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	out := GRPCShadow(p, demo.MethodMeta).Call(ctx, &shadow.Request{UIN: 42, Caller: "billing", Method: "/x.Y/Z",
		Ext: []codec.Ext{{Key: 0x8001, Value: []byte{1}}, {Key: 9, Value: []byte("dropped")}}})
	if out.Err != nil || out.Result != 0 {
		t.Fatalf("meta: %+v", out)
	}
	for _, want := range []string{"x-mgp-uin=42", "x-mgp-caller=billing", "x-mgp-ext-32769-bin=01"} {
		if !strings.Contains(string(out.Body), want) {
			t.Errorf("shadow call lacks %s:\n%s", want, out.Body)
		}
	}
	out = GRPCShadow(p, "").Call(ctx, &shadow.Request{Method: demo.MethodFail, Body: []byte("5 not here")})
	if out.Err != nil || out.Result != codec.ResultFor(5, 0) || out.Message != "not here" {
		t.Fatalf("fail: %+v", out)
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	out = GRPCShadow(p, demo.MethodSleep).Call(short, &shadow.Request{Body: []byte("2s")})
	if !errors.Is(out.Err, context.DeadlineExceeded) {
		t.Fatalf("sleep: %+v", out)
	}
	p.Retire()
	if out := GRPCShadow(p, demo.MethodEcho).Call(ctx, &shadow.Request{}); !errors.Is(out.Err, shadow.ErrSkipped) {
		t.Fatalf("retired: %+v", out)
	}
}
