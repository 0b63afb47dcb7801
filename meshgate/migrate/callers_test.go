package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/shadow"
)

// GRPCShadow against a real grpc-go server through a real pool: uin and
// caller travel as metadata, a status maps to the private result space, a
// shadow timeout is an error outcome, a retired pool skips.
func TestGRPCShadowRealPeer(t *testing.T) {
	p := pooltest.GRPC(t, config.Upstream{Name: "new", Protocol: config.ProtoGRPC, Endpoints: []string{testkit.Demo(t)}, Connections: 1}, grpcpool.Options{})
	ctx := testkit.Context(t, 5*time.Second)

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
