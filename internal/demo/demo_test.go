package demo

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

func TestDemoService(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewServer()
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var out []byte
	if err := cc.Invoke(ctx, MethodEcho, []byte("e"), &out); err != nil || string(out) != "e" {
		t.Fatalf("echo %q %v", out, err)
	}
	if err := cc.Invoke(ctx, MethodUpper, []byte("up"), &out); err != nil || string(out) != "UP" {
		t.Fatalf("upper %q %v", out, err)
	}
	err = cc.Invoke(ctx, MethodFail, []byte("5 no such thing"), &out)
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Fatalf("fail: %v", err)
	}
	var tr metadata.MD
	err = cc.Invoke(ctx, MethodFail, []byte("2 4321 app"), &out, grpc.Trailer(&tr))
	if status.Code(err) != codes.Unknown || strings.Join(tr.Get("x-mgp-result"), "") != "4321" {
		t.Fatalf("app fail: %v %v", err, tr)
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Millisecond)
	err = cc.Invoke(sctx, MethodSleep, []byte("1s"), &out)
	scancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("sleep past deadline: %v", err)
	}
	mctx := metadata.AppendToOutgoingContext(ctx, "x-mgp-caller", "me", "x-mgp-ext-32768-bin", "\x01\x02")
	if err := cc.Invoke(mctx, MethodMeta, []byte{}, &out); err != nil ||
		!strings.Contains(string(out), "x-mgp-caller=me") || !strings.Contains(string(out), "x-mgp-ext-32768-bin=0102") ||
		!strings.Contains(string(out), "deadline=") {
		t.Fatalf("meta %q %v", out, err)
	}
}
