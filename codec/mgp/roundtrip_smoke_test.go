package mgp

import (
	"bytes"
	"testing"

	"github.com/meshgate/meshgate/codec"
)

func TestRoundTripSmoke(t *testing.T) {
	c := New(0)
	in := codec.Frame{Cmd: 7, Seq: 9, UIN: 42, Flags: codec.FlagOneway, Ext: []codec.Ext{{Key: 4, Value: []byte("svc")}}, Body: []byte("hello")}
	b, err := c.Append(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	var out codec.Frame
	n, _, err := c.Decode(b, &out)
	if err != nil || n != len(b) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if out.Cmd != 7 || out.Seq != 9 || out.UIN != 42 || !bytes.Equal(out.Body, in.Body) || len(out.Ext) != 1 || string(out.Ext[0].Value) != "svc" {
		t.Fatalf("got %+v", out)
	}
	sb, err := c.Sign(nil, &in, 1, []byte("k"), 1000, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyAuth(sb, []byte("k")); err != nil {
		t.Fatal(err)
	}
	sb[len(sb)-2] ^= 1
	if _, err := VerifyAuth(sb, []byte("k")); err != ErrAuthBadMAC {
		t.Fatalf("tampered: %v", err)
	}
}
