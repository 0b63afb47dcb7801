package mgp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/codectest"
)

var hx = codectest.Hex

// helloHex is a request with one extension (caller "svc") padded to 40
// header bytes and a 5-byte body (the reference frame codec/fixed's
// mgp.yaml reproduces too).
const helloHex = codectest.MGPHelloHex

var helloFrame = codectest.MGPHelloFrame

// emptyHex is a heartbeat response: no extensions, no body.
const emptyHex = "02" + // stx
	"01" + // version
	"0020" + // header_len 32
	"00000000" + // body_len 0
	"00000000" + // cmd
	"ffffffff" + // seq
	"0000000000000000" + // uin
	"0005" + // flags RESPONSE|HEARTBEAT
	"0000" + // result
	"00000000" + // reserved
	"03" // etx

var emptyFrame = codec.Frame{Seq: 0xffffffff, Flags: codec.FlagResponse | codec.FlagHeartbeat}

// errHex is an error response with a message and an application extension
// that fill the header exactly (no padding).
const errHex = "02" + // stx
	"01" + // version
	"0030" + // header_len 48 = 32 + 8 + 8
	"00000001" + // body_len 1
	"00000100" + // cmd 256
	"00000001" + // seq 1
	"ffffffffffffffff" + // uin max
	"0001" + // flags RESPONSE
	"0009" + // result 9 internal
	"00000000" + // reserved
	"0005" + // ext key 5 (error message)
	"0004" + // ext len 4
	"6f6f7073" + // "oops"
	"8001" + // ext key 0x8001 (application)
	"0004" + // ext len 4
	"deadbeef" + // value
	"00" + // body
	"03" // etx

var errFrame = codec.Frame{Cmd: 256, Seq: 1, UIN: ^uint64(0), Flags: codec.FlagResponse, Result: codec.ResultInternal,
	Ext:  []codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte("oops")}, {Key: 0x8001, Value: hx("deadbeef")}},
	Body: []byte{0}}

func TestGoldenFrames(t *testing.T) {
	c := New(0)
	for _, tc := range []struct {
		name  string
		wire  string
		frame codec.Frame
	}{
		{"hello", helloHex, helloFrame},
		{"empty heartbeat", emptyHex, emptyFrame},
		{"error response", errHex, errFrame},
	} {
		t.Run(tc.name, func(t *testing.T) { codectest.CheckGolden(t, c, hx(tc.wire), &tc.frame) })
	}
}

func TestDecodeIgnoresReservedBits(t *testing.T) {
	wire := hx(emptyHex)
	wire[24], wire[25] = 0xff, 0xc1 // reserved flag bits 6-15 set
	wire[28] = 0x7f                 // reserved field non-zero
	var f codec.Frame
	if _, _, err := New(0).Decode(wire, &f); err != nil {
		t.Fatal(err)
	}
	if f.Flags != codec.FlagResponse {
		t.Fatalf("flags %#x, want reserved bits dropped", f.Flags)
	}
	f.Flags = 0xffc0 | codec.FlagPush
	out, err := New(0).Append(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if out[24] != 0 || out[25] != byte(codec.FlagPush) {
		t.Fatalf("reserved flag bits sent: %x", out[24:26])
	}
}

// TestStreamFlagsRoundTrip: MORE (bit 4) and CANCEL (bit 5) are carried
// both ways (docs/protocol.md "Push and streams"); they were dropped as
// reserved bits before streams existed.
func TestStreamFlagsRoundTrip(t *testing.T) {
	for _, fl := range []codec.Flags{codec.FlagMore, codec.FlagCancel, codec.FlagMore | codec.FlagResponse} {
		out, err := New(0).Append(nil, &codec.Frame{Cmd: 1, Seq: 2, Flags: fl})
		if err != nil {
			t.Fatal(err)
		}
		var f codec.Frame
		if _, _, err := New(0).Decode(out, &f); err != nil || f.Flags != fl {
			t.Fatalf("flags %#x came back as %#x (%v)", fl, f.Flags, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	c := New(0)
	big := bytes.Repeat([]byte{0xab}, 300)
	for i, f := range []codec.Frame{
		{},
		helloFrame, emptyFrame, errFrame,
		{Cmd: 1, Ext: []codec.Ext{{Key: 1, Value: nil}}},           // empty value: 4 bytes, no padding
		{Cmd: 1, Ext: []codec.Ext{{Key: 1, Value: []byte("a")}}},   // 3 bytes padding
		{Cmd: 1, Ext: []codec.Ext{{Key: 1, Value: []byte("ab")}}},  // 2 bytes padding
		{Cmd: 1, Ext: []codec.Ext{{Key: 1, Value: []byte("abc")}}}, // 1 byte padding
		{Cmd: 1, Ext: []codec.Ext{{Key: 3, Value: []byte{0, 0, 1, 0}}, {Key: 0xffff, Value: big}}, Body: big},
		{Cmd: 1, Ext: []codec.Ext{{Key: 2, Value: bytes.Repeat([]byte{1}, MaxHeaderLen-HeaderSize-4)}}}, // header_len 4096
		{Flags: codec.FlagResponse | codec.FlagOneway | codec.FlagHeartbeat | codec.FlagPush, Result: 0xffff},
	} {
		b, err := c.Append(nil, &f)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if hl := int(b[2])<<8 | int(b[3]); hl%4 != 0 {
			t.Fatalf("%d: header_len %d", i, hl)
		}
		var g codec.Frame
		n, _, err := c.Decode(b, &g)
		if err != nil || n != len(b) {
			t.Fatalf("%d: n=%d/%d err=%v", i, n, len(b), err)
		}
		if d := codectest.Diff(&f, &g); d != "" {
			t.Fatalf("%d: %s", i, d)
		}
	}
}

func TestAppendRejects(t *testing.T) {
	c := New(1024)
	for name, f := range map[string]codec.Frame{
		"ext key 0":           {Ext: []codec.Ext{{Key: 0, Value: []byte("x")}}},
		"ext value too long":  {Ext: []codec.Ext{{Key: 1, Value: make([]byte, 0x10000)}}},
		"header over 4096":    {Ext: []codec.Ext{{Key: 1, Value: make([]byte, MaxHeaderLen-HeaderSize-3)}}},
		"frame over max":      {Body: make([]byte, 1024-HeaderSize)},
		"header+body too big": {Ext: []codec.Ext{{Key: 1, Value: make([]byte, 600)}}, Body: make([]byte, 400)},
	} {
		dst := []byte("keep")
		out, err := c.Append(dst, &f)
		if !errors.Is(err, codec.ErrInvalidFrame) {
			t.Errorf("%s: err=%v, want ErrInvalidFrame", name, err)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst modified: %q", name, out)
		}
	}
	// Exactly the maximum encodes.
	if _, err := c.Append(nil, &codec.Frame{Body: make([]byte, 1024-HeaderSize-1)}); err != nil {
		t.Fatal(err)
	}
}

// prefix returns a frame prefix (stx, version, header_len, body_len).
func prefix(headerLen uint16, bodyLen uint32) []byte {
	b := []byte{STX, Version, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], headerLen)
	binary.BigEndian.PutUint32(b[4:], bodyLen)
	return b
}

// malformed lists every DESIGN.md hostile input a codec can judge. wire is
// the whole input; tooLarge means ErrFrameTooLarge, else field names the
// *codec.FieldError.
var malformed = []struct {
	name     string
	max      int
	wire     string
	tooLarge bool
	field    string
}{
	{name: "bad stx", wire: "05", field: "stx"},
	{name: "bad stx etx-like", wire: "03" + "01" + "0020" + "00000000", field: "stx"},
	{name: "bad version", wire: "02" + "02", field: "version"},
	{name: "version 0", wire: "02" + "00" + "0020", field: "version"},
	{name: "header_len 0 (length 0)", wire: "02" + "01" + "0000" + "00000000", field: "header_len"},
	{name: "header_len < 32", wire: "02" + "01" + "001c" + "00000000", field: "header_len"},
	{name: "header_len not multiple of 4", wire: "02" + "01" + "0022" + "00000000", field: "header_len"},
	{name: "header_len > 4096", wire: "02" + "01" + "1004" + "00000000", field: "header_len"},
	{name: "header_len 0xffff", wire: "02" + "01" + "ffff" + "00000000", field: "header_len"},
	{name: "body_len 0x7fffffff", wire: "02" + "01" + "0020" + "7fffffff", tooLarge: true},
	{name: "body_len 0xffffffff", wire: "02" + "01" + "0020" + "ffffffff", tooLarge: true},
	{name: "header+body overflow uint32", wire: "02" + "01" + "1000" + "ffffffff", tooLarge: true},
	{name: "max+1", max: 1024, wire: "02" + "01" + "0020" + "000003e0", tooLarge: true}, // 32+992+1 = 1025
	{name: "bad etx", wire: "02" + // stx
		"01" + // version
		"0020" + // header_len
		"00000001" + // body_len
		"00000001" + "00000001" + "0000000000000000" + "0000" + "0000" + "00000000" + // cmd seq uin flags result reserved
		"61" + // body
		"04", // etx wrong
		field: "etx"},
	{name: "TLV longer than header", wire: "02" + "01" +
		"0024" + // header_len 36
		"00000000" + // body_len
		"00000001" + "00000001" + "0000000000000000" + "0000" + "0000" + "00000000" +
		"0001" + // ext key 1
		"0008" + // ext len 8: runs past header_len
		"03", field: "extensions"},
	{name: "TLV value cut by header_len", wire: "02" + "01" +
		"0028" + // header_len 40
		"00000000" +
		"00000001" + "00000001" + "0000000000000000" + "0000" + "0000" + "00000000" +
		"0001" + "0005" + // key 1 len 5: needs 9 bytes, 8 present
		"61616161" + // only 4 value bytes before header_len
		"03", field: "extensions"},
	{name: "non-zero padding after TLV", wire: "02" + "01" +
		"0028" + // header_len 40
		"00000000" +
		"00000001" + "00000001" + "0000000000000000" + "0000" + "0000" + "00000000" +
		"0004" + "0001" + "61" + // key 4 len 1 "a"
		"000001" + // padding with a non-zero byte
		"03", field: "extensions"},
	{name: "non-zero after key-0 padding entry", wire: "02" + "01" +
		"0028" + // header_len 40
		"00000000" +
		"00000001" + "00000001" + "0000000000000000" + "0000" + "0000" + "00000000" +
		"0000" + "0000" + // key 0: padding starts
		"00010000" + // non-zero inside padding
		"03", field: "extensions"},
}

func TestMalformed(t *testing.T) {
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			c := New(tc.max)
			wire := hx(tc.wire)
			var f codec.Frame
			n, _, err := c.Decode(wire, &f)
			codectest.CheckMalformed(t, err, tc.tooLarge, tc.field)
			if n != 0 {
				t.Fatalf("n=%d on error", n)
			}
			// The same verdict through a Reader fed one byte per read.
			_, err = codectest.ReadAll(c, codectest.NewChunkReader(wire, 1), 64)
			codectest.CheckMalformed(t, err, tc.tooLarge, tc.field)
		})
	}
}

func TestMaxFrameSizeBoundary(t *testing.T) {
	const max = 1024
	c := New(max)
	f := codec.Frame{Body: make([]byte, max-HeaderSize-1)}
	b, err := c.Append(nil, &f)
	if err != nil || len(b) != max {
		t.Fatalf("len=%d err=%v", len(b), err)
	}
	var g codec.Frame
	if n, _, err := c.Decode(b, &g); err != nil || n != max {
		t.Fatalf("exactly max: n=%d err=%v", n, err)
	}
	frames, err := codectest.ReadAll(c, codectest.NewChunkReader(b, 7), 64)
	if err != nil || len(frames) != 1 {
		t.Fatalf("exactly max via Reader: %d frames, err=%v", len(frames), err)
	}
	// max+1 is rejected from the prefix alone.
	_, _, err = c.Decode(prefix(HeaderSize, max-HeaderSize), &g)
	var tl *codec.TooLargeError
	if !errors.As(err, &tl) || tl.Size != max+1 || tl.Max != max {
		t.Fatalf("max+1: %v", err)
	}
}

// prefixOnly delivers a frame prefix and fails the test if the body is ever
// asked for.
type prefixOnly struct {
	t    *testing.T
	p    []byte
	done bool
}

func (r *prefixOnly) Read(p []byte) (int, error) {
	if r.done {
		r.t.Error("Reader asked for body bytes of an oversized frame")
		return 0, io.ErrUnexpectedEOF
	}
	r.done = true
	return copy(p, r.p), nil
}

// TestOversizeNotAllocated proves oversized frames are rejected from the
// 8-byte prefix, before the body arrives and without allocating it.
func TestOversizeNotAllocated(t *testing.T) {
	c := New(0) // 4 MiB
	for _, bl := range []uint32{0x7fffffff, 0xffffffff, codec.DefaultMaxFrameSize - HeaderSize} {
		p := prefix(HeaderSize, bl)
		codectest.CheckTooLarge(t, c, p)
		var f codec.Frame
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 20 {
			rd := codec.NewReader(&prefixOnly{t: t, p: p}, c, 64)
			if err := rd.ReadFrame(&f); !errors.Is(err, codec.ErrFrameTooLarge) {
				t.Fatalf("body_len %#x via Reader: %v", bl, err)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / 20; per > 4096 {
			t.Fatalf("body_len %#x: %d bytes allocated per rejected frame", bl, per)
		}
	}
}

func TestNeedMore(t *testing.T) {
	c := New(0)
	wire := hx(helloHex)
	var f codec.Frame
	for k := 0; k < len(wire); k++ {
		n, need, err := c.Decode(wire[:k], &f)
		if err != nil || n != 0 {
			t.Fatalf("prefix %d: n=%d err=%v", k, n, err)
		}
		if need <= k {
			t.Fatalf("prefix %d: need %d not beyond buffered bytes", k, need)
		}
		if k >= 8 && need != len(wire) {
			t.Fatalf("prefix %d: need %d, want the frame size %d once known", k, need, len(wire))
		}
	}
}

func TestCloseMidBody(t *testing.T) {
	wire := hx(helloHex)
	for _, cut := range []int{1, 7, 8, 33, len(wire) - 1} {
		stream := append(hx(emptyHex), wire[:cut]...)
		frames, err := codectest.ReadAll(New(0), codectest.NewChunkReader(stream, 3), 64)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(frames) != 1 {
			t.Fatalf("cut %d: %d frames, err=%v", cut, len(frames), err)
		}
	}
}

// stream returns n frames of assorted sizes and shapes, encoded back to back.
func stream(t testing.TB, n int) ([]byte, []codec.Frame) {
	c := New(0)
	var buf []byte
	var want []codec.Frame
	for i := range n {
		f := codec.Frame{Cmd: uint32(i), Seq: uint32(i * 7), UIN: uint64(i) << 33, Body: bytes.Repeat([]byte{byte(i)}, (i*37)%700)}
		switch i % 4 {
		case 0:
			f.Ext = []codec.Ext{{Key: codec.ExtTraceparent, Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
		case 1:
			f.Ext = []codec.Ext{{Key: codec.ExtDeadline, Value: []byte{0, 0, 3, 232}}, {Key: 0x8000 + uint16(i), Value: bytes.Repeat([]byte("x"), i%5)}}
			f.Flags = codec.FlagResponse
			f.Result = uint16(i)
		case 2:
			f.Flags = codec.FlagHeartbeat
			f.Body = nil
		}
		var err error
		buf, err = c.Append(buf, &f)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, f)
	}
	return buf, want
}

func sameFrames(t *testing.T, label string, got, want []codec.Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", label, len(got), len(want))
	}
	for i := range got {
		if d := codectest.Diff(&got[i], &want[i]); d != "" {
			t.Fatalf("%s: frame %d: %s", label, i, d)
		}
	}
}

func TestSplitEverywhere(t *testing.T) {
	c := New(0)
	buf, want := stream(t, 6)
	for k := 1; k < len(buf); k++ {
		got, err := codectest.ReadAll(c, codectest.NewChunkReader(buf, k, len(buf)), 64)
		if err != nil {
			t.Fatalf("split at %d: %v", k, err)
		}
		sameFrames(t, fmt.Sprintf("split at %d", k), got, want)
	}
	for _, sizes := range [][]int{{1}, {2}, {3}, {5, 1, 17}, {31, 33}, {64}, {1000, 1}} {
		got, err := codectest.ReadAll(c, codectest.NewChunkReader(buf, sizes...), 64)
		if err != nil {
			t.Fatalf("chunks %v: %v", sizes, err)
		}
		sameFrames(t, fmt.Sprintf("chunks %v", sizes), got, want)
	}
}

func TestHundredFramesOneWrite(t *testing.T) {
	c := New(0)
	buf, want := stream(t, 100)
	r := codectest.NewChunkReader(buf)
	got, err := codectest.ReadAll(c, r, 4096)
	if err != nil {
		t.Fatal(err)
	}
	sameFrames(t, "one write", got, want)
	one, rest, err := codectest.DecodeAll(c, buf)
	if err != nil || rest != 0 {
		t.Fatalf("DecodeAll: rest=%d err=%v", rest, err)
	}
	sameFrames(t, "one-shot", one, want)
}

func TestZeroAllocs(t *testing.T) {
	c := New(0)
	codectest.CheckZeroAllocs(t, c, &errFrame)
	var f codec.Frame
	buf, _ := stream(t, 50)
	rd := codec.NewReader(&loopReader{data: buf, chunk: 1500}, c, 4096)
	for range 100 { // warm up: grow the buffer and f.Ext
		if err := rd.ReadFrame(&f); err != nil {
			t.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(500, func() {
		if err := rd.ReadFrame(&f); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Reader.ReadFrame steady state: %v allocs", a)
	}
}

// loopReader returns data over and over in chunks of chunk bytes.
type loopReader struct {
	data  []byte
	off   int
	chunk int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := min(len(p), r.chunk, len(r.data)-r.off)
	copy(p, r.data[r.off:r.off+n])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// TestLongErrorMessageIsTruncated: an ext 5 message too long for the
// 4096-byte header is cut on a UTF-8 boundary; result code, other
// extensions and body survive. (Before: Append failed and the bridge
// answered result 9 with no message.)
func TestLongErrorMessageIsTruncated(t *testing.T) {
	c := New(0)
	msg := strings.Repeat("€", 2000) // 6000 bytes, 3 per rune
	f := codec.Frame{Cmd: 7, Seq: 9, Flags: codec.FlagResponse, Result: codec.ResultNotFound,
		Ext:  []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc")}, {Key: codec.ExtErrorMsg, Value: []byte(msg)}, {Key: 0x8001, Value: []byte{1, 2}}},
		Body: []byte("body")}
	size, hl, err := c.Size(&f)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := c.Append(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if len(wire) != size || hl != MaxHeaderLen {
		t.Fatalf("size %d (Size said %d), header_len %d", len(wire), size, hl)
	}
	var g codec.Frame
	if n, _, err := c.Decode(wire, &g); err != nil || n != len(wire) {
		t.Fatalf("decode: n=%d err=%v", n, err)
	}
	got, _ := g.ExtValue(codec.ExtErrorMsg)
	if g.Result != codec.ResultNotFound || !utf8.Valid(got) || len(got) < MaxHeaderLen-HeaderSize-32 || !strings.HasPrefix(msg, string(got)) {
		t.Fatalf("result %d, message %d bytes valid=%v", g.Result, len(got), utf8.Valid(got))
	}
	if v, _ := g.ExtValue(0x8001); string(g.Body) != "body" || len(v) != 2 {
		t.Fatalf("body %q ext %v", g.Body, v)
	}
	if m, _ := f.ExtValue(codec.ExtErrorMsg); len(m) != len(msg) {
		t.Fatal("Append modified the caller's frame")
	}
	// Without a message to cut, an oversized header is still an error.
	f.Ext = []codec.Ext{{Key: 0x8002, Value: make([]byte, 5000)}}
	if _, err := c.Append(nil, &f); !errors.Is(err, codec.ErrInvalidFrame) {
		t.Fatalf("oversized app ext: %v", err)
	}
}
