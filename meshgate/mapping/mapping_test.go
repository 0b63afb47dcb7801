package mapping

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
)

func TestExtMDKey(t *testing.T) {
	for k, want := range map[uint16]string{0x8000: "x-mgp-ext-32768-bin", 0xffff: "x-mgp-ext-65535-bin"} {
		if got := ExtMDKey(k); got != want {
			t.Errorf("ExtMDKey(%d) = %q", k, got)
		}
		if back, isExt, err := ParseExtMDKey(want); back != k || !isExt || err != nil {
			t.Errorf("ParseExtMDKey(%q) = %d %v %v", want, back, isExt, err)
		}
	}
	for _, bad := range []string{"x-mgp-ext-12-bin", "x-mgp-ext-65536-bin", "x-mgp-ext--bin", "x-mgp-ext-0x8000-bin"} {
		if _, isExt, err := ParseExtMDKey(bad); !isExt || !errors.Is(err, ErrMetadata) {
			t.Errorf("ParseExtMDKey(%q) = %v %v", bad, isExt, err)
		}
	}
	if _, isExt, _ := ParseExtMDKey("x-mgp-uin"); isExt {
		t.Error("x-mgp-uin is not an extension key")
	}
}

// TestRequestRoundTrip: frame → metadata → frame keeps uin, traceparent,
// caller, deadline and repeated app extensions; the key id goes one way.
func TestRequestRoundTrip(t *testing.T) {
	var dl [4]byte
	in := codec.Frame{UIN: 1 << 40, Ext: []codec.Ext{
		{Key: codec.ExtTraceparent, Value: []byte("00-aa-bb-01")}, {Key: codec.ExtCaller, Value: []byte("svc")},
		{Key: 0x8001, Value: []byte("a")}, {Key: 0x8001, Value: []byte("b")}, {Key: 0x7000, Value: []byte("dropped")},
	}}
	AppendDeadline(&in, &dl, 1500*time.Millisecond)
	m := NewRequestMD()
	to, ok := m.FromFrame(&in, 7, true)
	if !ok || to != 1500*time.Millisecond {
		t.Fatalf("timeout %v %v", to, ok)
	}
	if v := m.MD[MDKeyID]; len(v) != 1 || v[0] != "7" {
		t.Fatalf("key id %v", m.MD)
	}
	var out codec.Frame
	if err := RequestFrame(m.MD, &out); err != nil {
		t.Fatal(err)
	}
	if out.UIN != in.UIN || len(out.Ext) != 4 {
		t.Fatalf("frame %+v", out)
	}
	for _, k := range []uint16{codec.ExtTraceparent, codec.ExtCaller} {
		a, _ := in.ExtValue(k)
		b, _ := out.ExtValue(k)
		if string(a) != string(b) {
			t.Errorf("ext %d: %q vs %q", k, a, b)
		}
	}
	m.Reset()
	if len(m.MD) != 0 {
		t.Fatal("Reset left metadata")
	}
	if err := RequestFrame(metadata.Pairs(MDUIN, "x"), &out); !errors.Is(err, ErrMetadata) {
		t.Fatalf("bad uin: %v", err)
	}
}

// TestStatusRoundTrip: every gRPC code with its message, and results
// 0–16, 17, 100, 1234 and 65535, cross the bridge twice unchanged at the
// mapping level (the e2e test does it with real processes).
func TestStatusRoundTrip(t *testing.T) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		err := status.Error(c, "msg "+c.String())
		var f codec.Frame
		ReplyFrame(&f, []byte("body"), err, nil, nil)
		trl, back := ReplyStatus(&f)
		if status.Code(back) != c || (c != codes.OK && status.Convert(back).Message() != "msg "+c.String()) || trl != nil {
			t.Errorf("%v → result %d → %v (trailer %v)", c, f.Result, back, trl)
		}
	}
	results := []uint16{17, 100, 1234, 65535}
	for r := uint16(0); r <= 16; r++ {
		results = append(results, r)
	}
	for _, r := range results {
		f := codec.Frame{Result: r, Ext: []codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte("m")}}}
		trl, err := ReplyStatus(&f)
		var g codec.Frame
		ReplyFrame(&g, nil, err, nil, trl)
		if g.Result != r {
			t.Errorf("result %d came back as %d", r, g.Result)
		}
	}
	// Empty message: ext 5 present and empty, and back to "".
	var f codec.Frame
	ReplyFrame(&f, nil, status.Error(codes.NotFound, ""), nil, nil)
	if _, err := ReplyStatus(&f); status.Convert(err).Message() != "" {
		t.Fatalf("empty message became %q", status.Convert(err).Message())
	}
}

func TestReplyExtensions(t *testing.T) {
	hdr := metadata.Pairs("x-mgp-ext-40000-bin", "h1", "x-mgp-ext-40000-bin", "h2", "x-mgp-ext-1-bin", "bad", "other", "x")
	var f codec.Frame
	ReplyFrame(&f, []byte("ok"), nil, hdr, metadata.Pairs("x-mgp-ext-40001-bin", "t"))
	if len(f.Ext) != 3 {
		t.Fatalf("ext %+v", f.Ext)
	}
	md := ReplyHeader(&f)
	if v := md["x-mgp-ext-40000-bin"]; len(v) != 2 || v[0] != "h1" || v[1] != "h2" || len(md["x-mgp-ext-40001-bin"]) != 1 {
		t.Fatalf("header %v", md)
	}
}

func TestUnencodable(t *testing.T) {
	f := codec.Frame{Seq: 3, Flags: codec.FlagResponse, Body: make([]byte, 10)}
	out := Unencodable(&f, codec.ErrInvalidFrame)
	if v, _ := out.ExtValue(codec.ExtErrorMsg); out.Result != codec.ResultOverloaded || out.Seq != 3 || len(v) == 0 || out.Body != nil {
		t.Fatalf("%+v", out)
	}
	f = codec.Frame{Result: codec.ResultAborted, Ext: []codec.Ext{{Key: codec.ExtErrorMsg, Value: make([]byte, 5000)}, {Key: 0x8000, Value: []byte("x")}}}
	out = Unencodable(&f, codec.ErrInvalidFrame)
	if v, _ := out.ExtValue(codec.ExtErrorMsg); out.Result != codec.ResultAborted || len(v) != maxFallbackMsg || len(out.Ext) != 1 {
		t.Fatalf("%+v", out)
	}
}
