package fixed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/codectest"
)

var hx = codectest.Hex

// le16Hex is a le16 response: length-first, little-endian, no trailer.
const le16Hex = "1a000000" + // length 26 = 16 header + 10 body
	"3412" + // cmd 0x1234
	"80" + // flags: bit 7 = RESPONSE
	"a5" + // magic
	"78563412" + // seq 0x12345678
	"2a000000" + // uin 42
	"68656c6c6f776f726c64" // body "helloworld"

var le16Frame = codec.Frame{Cmd: 0x1234, Seq: 0x12345678, UIN: 42, Flags: codec.FlagResponse, Body: []byte("helloworld")}

// le16Empty is a oneway request with no body.
const le16Empty = "10000000" + // length 16: the header alone
	"0100" + // cmd 1
	"40" + // flags: bit 6 = ONEWAY
	"a5" + // magic
	"ffffffff" + // seq
	"00000000" // uin 0

var le16EmptyFrame = codec.Frame{Cmd: 1, Seq: 0xffffffff, Flags: codec.FlagOneway}

// mgpHex is MGP/1 through mgp.yaml: one caller extension padded to 40,
// the same bytes codec/mgp's own golden test pins.
const mgpHex = codectest.MGPHelloHex

var mgpFrame = codectest.MGPHelloFrame

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		wire  string
		frame codec.Frame
	}{
		{"le16.yaml", le16Hex, le16Frame},
		{"le16.yaml", le16Empty, le16EmptyFrame},
		{"mgp.yaml", mgpHex, mgpFrame},
	} {
		t.Run(tc.spec, func(t *testing.T) { codectest.CheckGolden(t, mustLoad(t, tc.spec, 0), hx(tc.wire), &tc.frame) })
	}
}

func TestLE16Mapping(t *testing.T) {
	c := mustLoad(t, "le16.yaml", 0)
	// Flags without a wire bit, and extensions, are not carried.
	f := le16Frame
	f.Flags |= codec.FlagHeartbeat | codec.FlagPush
	f.Ext = []codec.Ext{{Key: 1, Value: []byte("dropped")}}
	got, err := c.Append(nil, &f)
	if err != nil || !bytes.Equal(got, hx(le16Hex)) {
		t.Fatalf("got %x err=%v", got, err)
	}
	// Wire flag bits without a mapping are ignored on decode.
	wire := hx(le16Hex)
	wire[6] |= 0x3f
	var g codec.Frame
	if _, _, err := c.Decode(wire, &g); err != nil || g.Flags != codec.FlagResponse {
		t.Fatalf("flags %#x err=%v", g.Flags, err)
	}
	// Values wider than their field are refused, dst untouched.
	for name, f := range map[string]codec.Frame{
		"cmd": {Cmd: 0x10000}, "uin": {UIN: 1 << 32},
	} {
		out, err := c.Append([]byte("keep"), &f)
		if !errors.Is(err, codec.ErrInvalidFrame) || string(out) != "keep" || !bytes.Contains([]byte(err.Error()), []byte(name)) {
			t.Fatalf("%s: out=%q err=%v", name, out, err)
		}
	}
}

func TestMalformedLE16(t *testing.T) {
	for _, tc := range []struct {
		name     string
		max      int
		wire     string
		tooLarge bool
		field    string
	}{
		{name: "length 0", wire: "00000000", field: "length"},
		{name: "length < header", wire: "0f000000", field: "length"},
		{name: "bad magic", wire: "10000000" + "0100" + "00" + "5a", field: "magic"},
		{name: "length 0x7fffffff", wire: "ffffff7f", tooLarge: true},
		{name: "length 0xffffffff", wire: "ffffffff", tooLarge: true},
		{name: "max+1", max: 64, wire: "41000000", tooLarge: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, "le16.yaml", tc.max)
			var f codec.Frame
			_, _, err := c.Decode(hx(tc.wire), &f)
			codectest.CheckMalformed(t, err, tc.tooLarge, tc.field)
			_, err = codectest.ReadAll(c, codectest.NewChunkReader(hx(tc.wire), 1), 64)
			codectest.CheckMalformed(t, err, tc.tooLarge, tc.field)
		})
	}
	// Exactly the maximum is accepted.
	c := mustLoad(t, "le16.yaml", 64)
	b, err := c.Append(nil, &codec.Frame{Body: make([]byte, 48)})
	if err != nil || len(b) != 64 {
		t.Fatalf("len %d err=%v", len(b), err)
	}
	if n, _, err := c.Decode(b, &codec.Frame{}); n != 64 || err != nil {
		t.Fatalf("exactly max: n=%d err=%v", n, err)
	}
	if _, err := c.Append(nil, &codec.Frame{Body: make([]byte, 49)}); !errors.Is(err, codec.ErrInvalidFrame) {
		t.Fatalf("encode max+1: %v", err)
	}
}

func TestOversizeFromPrefixOnly(t *testing.T) {
	for _, spec := range []string{"le16.yaml", "mgp.yaml"} {
		c := mustLoad(t, spec, 0)
		p := hx("ffffffff") // le16 length
		if spec == "mgp.yaml" {
			p = hx("02" + "01" + "0020" + "ffffffff")
		}
		codectest.CheckTooLarge(t, c, p)
	}
}

func TestNeed(t *testing.T) {
	for _, tc := range []struct{ spec, wire string }{{"le16.yaml", le16Hex}, {"mgp.yaml", mgpHex}} {
		c := mustLoad(t, tc.spec, 0)
		wire := hx(tc.wire)
		for k := 0; k < len(wire); k++ {
			n, need, err := c.Decode(wire[:k], &codec.Frame{})
			if err != nil || n != 0 || need <= k || need > len(wire) {
				t.Fatalf("%s prefix %d: n=%d need=%d err=%v", tc.spec, k, n, need, err)
			}
			if k >= c.prefix && need != len(wire) {
				t.Fatalf("%s prefix %d: need %d", tc.spec, k, need)
			}
		}
	}
}

// frames returns n assorted frames; le16 limits them to what it carries.
func frames(n int, le16 bool) []codec.Frame {
	var out []codec.Frame
	for i := range n {
		f := codec.Frame{Cmd: uint32(i * 3), Seq: uint32(i) * 0x01010101, UIN: uint64(i) << 20,
			Body: bytes.Repeat([]byte{byte(i)}, (i*53)%900)}
		switch i % 3 {
		case 0:
			f.Flags = codec.FlagResponse
			f.Result = uint16(i)
		case 1:
			f.Flags = codec.FlagOneway
			f.Ext = []codec.Ext{{Key: codec.ExtDeadline, Value: []byte{0, 0, 0, byte(i)}}, {Key: 0x8000 | uint16(i), Value: bytes.Repeat([]byte("e"), i%7)}}
		}
		if le16 {
			f.Ext, f.Result = nil, 0
		}
		out = append(out, f)
	}
	return out
}

func TestSplitAndBatch(t *testing.T) {
	for _, spec := range []string{"le16.yaml", "mgp.yaml"} {
		c := mustLoad(t, spec, 0)
		want := frames(100, spec == "le16.yaml")
		var buf []byte
		for i := range want {
			var err error
			if buf, err = c.Append(buf, &want[i]); err != nil {
				t.Fatal(err)
			}
		}
		check := func(label string, got []codec.Frame, err error) {
			t.Helper()
			if err != nil || len(got) != len(want) {
				t.Fatalf("%s %s: %d frames err=%v", spec, label, len(got), err)
			}
			for i := range got {
				if d := codectest.Diff(&got[i], &want[i]); d != "" {
					t.Fatalf("%s %s: frame %d: %s", spec, label, i, d)
				}
			}
		}
		got, err := codectest.ReadAll(c, codectest.NewChunkReader(buf), 4096) // 100 frames in one write
		check("one write", got, err)
		got, err = codectest.ReadAll(c, codectest.NewChunkReader(buf, 1), 64)
		check("one byte per read", got, err)
		// Every split point of the first few frames.
		head := 0
		for i := range 5 {
			sz, _, _ := c.Size(&want[i])
			head += sz
		}
		for k := 1; k < head; k++ {
			got, err = codectest.ReadAll(c, codectest.NewChunkReader(buf, k, len(buf)), 64)
			check(fmt.Sprintf("split %d", k), got, err)
		}
		// Close mid-frame.
		_, err = codectest.ReadAll(c, codectest.NewChunkReader(buf[:head-1], 7), 64)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s cut: %v", spec, err)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, spec := range []string{"le16.yaml", "mgp.yaml"} {
		t.Run(spec, func(t *testing.T) {
			codectest.CheckZeroAllocs(t, mustLoad(t, spec, 0), &frames(3, spec == "le16.yaml")[1])
		})
	}
}

// TestTotalLenVariants covers total_len counting a trailer and not the
// header, header_len without extensions, and 8-byte fields.
func TestTotalLenVariants(t *testing.T) {
	c, err := Parse([]byte(`
byte_order: big
fields:
  - {name: magic, size: 2, const: 0xcafe}
  - {name: len, size: 8, role: total_len, includes: [body, trailer]}
  - {name: hlen, size: 1, role: header_len, multiple_of: 8}
  - {name: result, size: 1, role: result}
  - {name: uin, size: 8, role: uin}
trailer: {bytes: [0x0d, 0x0a]}
`), 0)
	if err != nil {
		t.Fatal(err)
	}
	f := codec.Frame{UIN: 1<<63 + 5, Result: 200, Body: []byte("hi")}
	wire, err := c.Append(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	want := hx("cafe" + // magic
		"0000000000000004" + // len: body 2 + trailer 2
		"18" + // hlen 24: 20 fixed bytes rounded up to a multiple of 8
		"c8" + // result 200
		"8000000000000005" + // uin
		"00000000" + // header padding
		"6869" + // body
		"0d0a") // trailer
	if !bytes.Equal(wire, want) {
		t.Fatalf("got  %x\nwant %x", wire, want)
	}
	var g codec.Frame
	if n, _, err := c.Decode(wire, &g); err != nil || n != len(wire) || codectest.Diff(&f, &g) != "" {
		t.Fatalf("n=%d err=%v %s", n, err, codectest.Diff(&f, &g))
	}
	bad := bytes.Clone(wire)
	bad[len(bad)-1] = 0
	_, _, err = c.Decode(bad, &g)
	codectest.CheckMalformed(t, err, false, "trailer[1]")
	bad = bytes.Clone(wire)
	bad[9] = 1 // len 1 < trailer 2
	_, _, err = c.Decode(bad, &g)
	codectest.CheckMalformed(t, err, false, "len")
	bad = bytes.Clone(wire)
	bad[10] = 20 // hlen not a multiple of 8
	_, _, err = c.Decode(bad, &g)
	codectest.CheckMalformed(t, err, false, "hlen")
	if _, err := c.Append(nil, &codec.Frame{Result: 256}); !errors.Is(err, codec.ErrInvalidFrame) {
		t.Fatalf("result 256: %v", err)
	}
}
