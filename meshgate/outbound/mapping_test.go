package outbound_test

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// TestClientStreamCardinality: a grpc-go client stream on a (unary) route
// fails INTERNAL "cardinality violation" whether it sends several messages
// or none, and the backend is never called. Before, three messages were
// answered OK from the first one alone and an empty stream got UNKNOWN
// "EOF".
func TestClientStreamCardinality(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	for _, msgs := range [][]string{{"s1", "s2", "s3"}, {}} {
		ctx := tctx(t, 5*time.Second)
		st, err := e.cc.NewStream(ctx, desc, "/test.Echo/Echo")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := st.SendMsg([]byte(m)); err != nil {
				t.Fatalf("send %q: %v", m, err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var out []byte
		err = st.RecvMsg(&out)
		if status.Code(err) != codes.Internal || !strings.Contains(status.Convert(err).Message(), "cardinality violation") {
			t.Errorf("%d messages: got %v (body %q), want INTERNAL cardinality violation", len(msgs), err, out)
		}
	}
	if _, ok := e.seen.get("s1"); ok {
		t.Error("the backend was called for a cardinality violation")
	}
	if n := e.backend.Stats().Requests; n != 0 {
		t.Errorf("backend served %d requests", n)
	}
	// Exactly one message over a client stream is a unary call: OK.
	ctx := tctx(t, 5*time.Second)
	st, err := e.cc.NewStream(ctx, desc, "/test.Echo/Echo")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg([]byte("one")); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseSend()
	var out []byte
	if err := st.RecvMsg(&out); err != nil || string(out) != "one" {
		t.Fatalf("one message: %q %v", out, err)
	}
}

// TestOnewayRoute: a oneway route sends the frame with ONEWAY set and
// answers OK with an empty message once it is written, without waiting for
// the backend (CmdSlow sleeps 2 s and, being oneway, never replies).
func TestOnewayRoute(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	err := e.out.Update(listener(config.Route{Method: "/test.Fire/Forget", Cmd: legacy.CmdSlow, Upstream: "legacy", Oneway: true}),
		upstream.Set{Private: map[string]*upstream.PrivatePool{"legacy": e.pool}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := tctx(t, 5*time.Second)
	body := []byte{0, 0, 0x07, 0xd0, 'f'} // sleep 2000 ms
	t0 := time.Now()
	out, err := e.invoke(ctx, "/test.Fire/Forget", body)
	if err != nil || len(out) != 0 {
		t.Fatalf("oneway call: %q %v", out, err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("oneway call took %v: it waited for the backend", el)
	}
	// The frame was written before the answer; the backend reads it soon.
	var f codec.Frame
	for ok := false; !ok; {
		if ctx.Err() != nil {
			t.Fatal("backend saw nothing")
		}
		time.Sleep(5 * time.Millisecond)
		f, ok = e.seen.get(string(body))
	}
	if !f.Flags.Has(codec.FlagOneway) || f.Cmd != legacy.CmdSlow {
		t.Fatalf("frame flags %#x cmd %d", f.Flags, f.Cmd)
	}
	if st := e.pool.Stats(); st.InFlight != 0 {
		t.Fatalf("oneway call holds a pool slot: %+v", st)
	}
}

// TestFullStatusTable: every result 0–16, reserved and application
// results, with their messages, become the table's gRPC code (results ≥ 17
// as UNKNOWN + x-mgp-result) and map back to the same result.
func TestFullStatusTable(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	ctx := tctx(t, 5*time.Second)
	results := []uint16{17, 99, 100, 1234, 65535}
	for r := uint16(0); r <= 16; r++ {
		results = append(results, r)
	}
	for _, result := range results {
		msg := "failure " + strconv.Itoa(int(result)) + " ünïcode"
		body := append(binary.BigEndian.AppendUint16(nil, result), msg...)
		var trl metadata.MD
		_, err := e.invoke(ctx, "/test.Echo/Fail", body, grpc.Trailer(&trl))
		st := status.Convert(err)
		wantCode, app := codec.GRPCCode(result)
		if uint32(st.Code()) != wantCode || (result != 0 && st.Message() != msg) {
			t.Errorf("result %d: got %v %q, want code %d %q", result, st.Code(), st.Message(), wantCode, msg)
		}
		v := trl.Get("x-mgp-result")
		if app != (len(v) == 1) || (app && v[0] != strconv.Itoa(int(result))) {
			t.Errorf("result %d: trailer %v (app=%v)", result, trl, app)
		}
		var appResult uint16
		if len(v) == 1 {
			n, _ := strconv.Atoi(v[0])
			appResult = uint16(n)
		}
		if back := codec.ResultFor(uint32(st.Code()), appResult); back != result {
			t.Errorf("result %d came back as %d", result, back)
		}
	}
}

// TestRepeatedAppExtensions: a metadata key with several values becomes
// several extensions with that key, and a reply's repeated extensions
// come back as several header values, in order. (Before: only the first
// value travelled.)
func TestRepeatedAppExtensions(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{EchoExt: true}, 1, 1)
	ctx := metadata.AppendToOutgoingContext(tctx(t, 5*time.Second),
		"x-mgp-ext-40000-bin", "one", "x-mgp-ext-40000-bin", "two")
	var hdr metadata.MD
	if _, err := e.invoke(ctx, "/test.Echo/Echo", []byte("rep"), grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	f, _ := e.seen.get("rep")
	var got []string
	for _, x := range f.Ext {
		if x.Key == 40000 {
			got = append(got, string(x.Value))
		}
	}
	if strings.Join(got, ",") != "one,two" {
		t.Fatalf("backend extensions 40000 = %q", got)
	}
	if v := hdr.Get("x-mgp-ext-40000-bin"); strings.Join(v, ",") != "one,two" {
		t.Fatalf("response header %v", hdr)
	}
}
