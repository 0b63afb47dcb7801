package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/descset/descsettest"
)

// protoEchoServer is a protobuf gRPC service for legacy.Legacy/Echo: it
// parses legacy.EchoRequest and answers legacy.EchoResponse{text:
// upper(text), count: count+1}.
func protoEchoServer(t *testing.T, calls *atomic.Int32) string {
	t.Helper()
	set, err := descset.FromFileDescriptorSet(descsettest.FileDescriptorSet())
	if err != nil {
		t.Fatal(err)
	}
	reqD, _ := set.Message("legacy.EchoRequest")
	respD, _ := set.Message("legacy.EchoResponse")
	return testkit.AnyMethod(t, func(_ context.Context, in []byte) ([]byte, error) {
		calls.Add(1)
		req := dynamicpb.NewMessage(reqD)
		if err := proto.Unmarshal(in, req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "not an EchoRequest: %v", err)
		}
		resp := dynamicpb.NewMessage(respD)
		resp.Set(respD.Fields().ByName("text"), protoreflect.ValueOfString(strings.ToUpper(req.Get(reqD.Fields().ByName("text")).String())))
		resp.Set(respD.Fields().ByName("count"), protoreflect.ValueOfInt64(req.Get(reqD.Fields().ByName("count")).Int()+1))
		// Deterministic: fields in number order (the raw route compares bytes).
		return proto.MarshalOptions{Deterministic: true}.Marshal(resp)
	})
}

func transcodeConfig(protoset, grpcEP, reqType string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
  - name: mgp-in
    kind: private
    address: 127.0.0.1:0
    reflection: {descriptor_sets: [%q]}
    routes:
      - {cmd: 1, method: /legacy.Legacy/Echo, upstream: svc, body: {format: json, request_type: %s, response_type: legacy.EchoResponse}}
      - {cmd: 2, method: /legacy.Legacy/Echo, upstream: svc}
upstreams:
  - {name: svc, protocol: grpc, endpoints: [%q]}
`, protoset, reqType, grpcEP)
}

// TestJSONBodyTranscoding: an MGP client's JSON body reaches a protobuf
// gRPC service as protobuf and the reply comes back as JSON; a body that
// does not parse is answered result 2 naming the field, without calling
// the service; a route naming an unknown type rejects the config.
func TestJSONBodyTranscoding(t *testing.T) {
	var calls atomic.Int32
	ep := protoEchoServer(t, &calls)
	ps := descsettest.Write(t, t.TempDir())
	rt := start(t, mustParse(t, transcodeConfig(ps, ep, "legacy.EchoRequest")))
	cl := dial(t, rt, "mgp-in", 1)

	r, err := call(cl, 1, `{"text":"hello json","count":"41","tags":["a","b"],"inner":{"flag":true}}`)
	if err != nil || r.Result != 0 {
		t.Fatalf("call: %v %+v", err, r)
	}
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("reply is not JSON: %q: %v", r.Body, err)
	}
	if got["text"] != "HELLO JSON" || got["count"] != "42" || len(got) != 2 {
		t.Fatalf("reply %v", got)
	}
	// An empty body is the empty message.
	r, err = call(cl, 1, "")
	var empty map[string]any
	if err != nil || r.Result != 0 || json.Unmarshal(r.Body, &empty) != nil || empty["count"] != "1" {
		t.Fatalf("empty body: %v %+v", err, r)
	}
	before := calls.Load()
	for body, field := range map[string]string{
		`{"count":"many"}`:     "count",
		`{"nope":1}`:           "nope",
		`{"inner":{"flag":3}}`: "flag",
		`not json`:             "legacy.EchoRequest",
	} {
		r, err := call(cl, 1, body)
		if err != nil || r.Result != codec.ResultBadRequest {
			t.Fatalf("%s: %v %+v", body, err, r)
		}
		msg, _ := r.ExtValue(codec.ExtErrorMsg)
		if !strings.Contains(string(msg), field) {
			t.Errorf("%s: message %q does not name %s", body, msg, field)
		}
	}
	if calls.Load() != before {
		t.Errorf("the service was called for bad bodies")
	}
	// A route without body config passes bytes as they are.
	if r, err := call(cl, 2, "\x0a\x02hi"); err != nil || r.Result != 0 || string(r.Body) != "\x0a\x02HI\x10\x01" {
		t.Fatalf("raw route: %v %+v", err, r)
	}

	bad := mustParse(t, transcodeConfig(ps, ep, "legacy.Missing"))
	err = rt.Reload(bad)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "listeners[0].routes[0].body") || !strings.Contains(err.Error(), "legacy.Missing") {
		t.Fatalf("reload with an unknown type: %v", err)
	}
	ctx := testkit.Context(t, 5*time.Second)
	if r, err := cl.Call(ctx, 1, 1, []byte(`{"text":"still"}`), nil); err != nil || !strings.Contains(string(r.Body), "STILL") {
		t.Fatalf("after rejected reload: %v %+v", err, r)
	}
}

// TestJSONBodyTranscodingGRPCToPrivate: a protobuf gRPC call to a route
// with body.format json reaches the legacy server as JSON and its JSON
// reply comes back as protobuf; a reply that is not the declared JSON
// message is INTERNAL, a request that is not protobuf INVALID_ARGUMENT.
func TestJSONBodyTranscodingGRPCToPrivate(t *testing.T) {
	var seen atomic.Value
	_, lAddr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(f *codec.Frame) { seen.Store(string(f.Body)) }})
	ps := descsettest.Write(t, t.TempDir())
	rt := start(t, mustParse(t, fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    reflection: {descriptor_sets: [%q]}
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy, body: {format: json, request_type: legacy.EchoRequest, response_type: legacy.EchoResponse}}
      - {method: /legacy.Legacy/Uppercase, cmd: 2, upstream: legacy, body: {format: json, request_type: legacy.EchoRequest, response_type: legacy.EchoResponse}}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q]}
`, ps, lAddr)))
	set, err := descset.FromFileDescriptorSet(descsettest.FileDescriptorSet())
	if err != nil {
		t.Fatal(err)
	}
	reqD, _ := set.Message("legacy.EchoRequest")
	respD, _ := set.Message("legacy.EchoResponse")
	req := dynamicpb.NewMessage(reqD)
	req.Set(reqD.Fields().ByName("text"), protoreflect.ValueOfString("hi"))
	req.Set(reqD.Fields().ByName("count"), protoreflect.ValueOfInt64(7))
	in, _ := proto.Marshal(req)

	cc := testkit.Client(t, rt.Addr("grpc-in").String())
	ctx := testkit.Context(t, 5*time.Second)
	var out []byte
	if err := cc.Invoke(ctx, "/legacy.Legacy/Echo", in, &out); err != nil {
		t.Fatalf("echo: %v", err)
	}
	var sent map[string]any
	if s, _ := seen.Load().(string); json.Unmarshal([]byte(s), &sent) != nil || sent["text"] != "hi" || sent["count"] != "7" || len(sent) != 2 {
		t.Errorf("legacy server got %q, want the JSON EchoRequest", s)
	}
	resp := dynamicpb.NewMessage(respD)
	if err := proto.Unmarshal(out, resp); err != nil {
		t.Fatalf("reply is not protobuf: %v", err)
	}
	if resp.Get(respD.Fields().ByName("text")).String() != "hi" || resp.Get(respD.Fields().ByName("count")).Int() != 7 {
		t.Fatalf("reply %v", resp)
	}
	// The legacy Uppercase reply {"TEXT":...} is no EchoResponse.
	err = cc.Invoke(ctx, "/legacy.Legacy/Uppercase", in, &out)
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "TEXT") {
		t.Fatalf("bad reply: %v", err)
	}
	err = cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte{0xff, 0xff}, &out)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "legacy.EchoRequest") {
		t.Fatalf("bad request: %v", err)
	}
}
