package mgp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/codectest"
)

var authKey = []byte("0123456789abcdef0123456789abcdef")

func signed(t *testing.T) ([]byte, codec.Frame) {
	t.Helper()
	f := codec.Frame{Cmd: 7, Seq: 9, UIN: 42, Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc")}}, Body: []byte("hello")}
	b, err := New(0).Sign([]byte("pre"), &f, 77, authKey, 1_700_000_000_000, 0xfeed)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:3]) != "pre" {
		t.Fatalf("dst prefix lost: %q", b[:3])
	}
	return b[3:], f
}

func TestSignVerify(t *testing.T) {
	b, f := signed(t)
	a, err := VerifyAuth(b, authKey)
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID != 77 || a.UnixMs != 1_700_000_000_000 || a.Nonce != 0xfeed {
		t.Fatalf("auth %+v", a)
	}
	// The frame still decodes, with the auth extension after the caller.
	var g codec.Frame
	if _, _, err := New(0).Decode(b, &g); err != nil {
		t.Fatal(err)
	}
	v, ok := g.ExtValue(codec.ExtAuth)
	if !ok || len(v) != AuthSize || len(g.Ext) != 2 || g.Ext[0].Key != codec.ExtCaller {
		t.Fatalf("ext %+v", g.Ext)
	}
	pa, err := ParseAuth(v)
	if err != nil || pa != a {
		t.Fatalf("ParseAuth %+v %v", pa, err)
	}
	// Re-signing replaces the extension instead of adding a second one.
	b2, err := New(0).Sign(nil, &f, 78, authKey, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := New(0).Decode(b2, &g); err != nil || len(g.Ext) != 2 {
		t.Fatalf("re-sign: %d ext, err=%v", len(g.Ext), err)
	}
}

func TestVerifyRejects(t *testing.T) {
	b, _ := signed(t)
	hl := int(binary.BigEndian.Uint16(b[2:]))
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		key    []byte
		want   error
	}{
		{"wrong key", nil, []byte("other"), ErrAuthBadMAC},
		{"body bit flipped", func(b []byte) []byte { b[hl] ^= 1; return b }, authKey, ErrAuthBadMAC},
		{"header bit flipped", func(b []byte) []byte { b[8] ^= 0x80; return b }, authKey, ErrAuthBadMAC},
		{"mac bit flipped", func(b []byte) []byte { b[hl-1] ^= 1; return b }, authKey, ErrAuthBadMAC},
		{"nonce changed (replay with new nonce)", func(b []byte) []byte {
			off := bytes.Index(b, []byte{0, 2, 0, AuthSize}) + 4
			b[off+19] ^= 1
			return b
		}, authKey, ErrAuthBadMAC},
		{"auth truncated", func(b []byte) []byte {
			off := bytes.Index(b, []byte{0, 2, 0, AuthSize})
			b[off+3] = AuthSize - 1 // value one byte short
			return b
		}, authKey, ErrAuthMalformed},
		{"auth runs past header", func(b []byte) []byte {
			off := bytes.Index(b, []byte{0, 2, 0, AuthSize})
			b[off+2] = 0x10 // value claims 4148 bytes
			return b
		}, authKey, ErrAuthMalformed},
		{"no auth", func([]byte) []byte {
			out, _ := New(0).Append(nil, &codec.Frame{Cmd: 1})
			return out
		}, authKey, ErrAuthMissing},
		{"short frame", func(b []byte) []byte { return b[:10] }, authKey, ErrAuthMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(b)
			if tc.mutate != nil {
				in = tc.mutate(in)
			}
			if _, err := VerifyAuth(in, tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("err=%v, want %v", err, tc.want)
			}
		})
	}
	if _, err := ParseAuth(make([]byte, AuthSize+1)); !errors.Is(err, ErrAuthMalformed) {
		t.Fatalf("ParseAuth long: %v", err)
	}
}

func TestSignRejectsUnencodable(t *testing.T) {
	f := codec.Frame{Body: make([]byte, 100)}
	dst := []byte("keep")
	out, err := New(64).Sign(dst, &f, 1, authKey, 1, 1)
	if !errors.Is(err, codec.ErrInvalidFrame) || string(out) != "keep" {
		t.Fatalf("out=%q err=%v", out, err)
	}
}

func TestDeadline(t *testing.T) {
	var b [4]byte
	f := codec.Frame{}
	if _, ok := Deadline(&f); ok {
		t.Fatal("deadline on empty frame")
	}
	f.SetExt(codec.ExtDeadline, PutDeadline(&b, 1500))
	wire, err := New(0).Append(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	want := codectest.Hex("0003" + // ext key 3 (deadline)
		"0004" + // len 4
		"000005dc") // 1500 ms
	if !bytes.Equal(wire[HeaderSize:HeaderSize+8], want) {
		t.Fatalf("ext bytes %x", wire[HeaderSize:HeaderSize+8])
	}
	var g codec.Frame
	if _, _, err := New(0).Decode(wire, &g); err != nil {
		t.Fatal(err)
	}
	if ms, ok := Deadline(&g); !ok || ms != 1500 {
		t.Fatalf("deadline %d %v", ms, ok)
	}
	g.Ext[0].Value = g.Ext[0].Value[:3]
	if _, ok := Deadline(&g); ok {
		t.Fatal("3-byte deadline accepted")
	}
}

// TestKeyZeroAlloc pins the hot path: with a prepared Key, signing into a
// buffer with room and verifying in place allocate nothing.
func TestKeyZeroAlloc(t *testing.T) {
	key := NewKey(authKey)
	c := New(0)
	f := codec.Frame{Cmd: 7, Seq: 9, Ext: make([]codec.Ext, 0, 2), Body: make([]byte, 300)}
	dst := make([]byte, 0, 512)
	var err error
	sign := testing.AllocsPerRun(200, func() {
		dst, err = c.SignKey(dst[:0], &f, 77, key, 1_700_000_000_000, 5)
	})
	if err != nil {
		t.Fatal(err)
	}
	verify := testing.AllocsPerRun(200, func() {
		if _, err := key.Verify(dst); err != nil {
			t.Fatal(err)
		}
	})
	if (sign != 0 || verify != 0) && !raceEnabled && testing.CoverMode() == "" {
		t.Fatalf("allocs per op: sign %v, verify %v; want 0", sign, verify)
	}
	// SignKey and Sign agree byte for byte; f's auth value is the signed one.
	legacy, err := c.Sign(nil, &codec.Frame{Cmd: 7, Seq: 9, Body: make([]byte, 300)}, 77, authKey, 1_700_000_000_000, 5)
	if err != nil || !bytes.Equal(legacy, dst) {
		t.Fatalf("Sign and SignKey differ (err %v)", err)
	}
	if v, _ := f.ExtValue(codec.ExtAuth); !bytes.Equal(v, dst[HeaderSize+4:HeaderSize+4+AuthSize]) {
		t.Fatalf("f's auth value %x is not the signed one", v)
	}
}
