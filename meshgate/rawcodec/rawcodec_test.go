package rawcodec

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestRoundTrip(t *testing.T) {
	var c Codec
	for _, in := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("ab"), 4096)} {
		var m Message
		m.SetBytes(in)
		bs, err := c.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		if m.Len() != 0 {
			t.Fatal("Marshal did not take the buffers")
		}
		var out Message
		if err := c.Unmarshal(bs, &out); err != nil {
			t.Fatal(err)
		}
		bs.Free() // what gRPC does after Unmarshal
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("got %d bytes, want %d", out.Len(), len(in))
		}
		var b []byte
		if err := c.Unmarshal(out.Buffers(), &b); err != nil || !bytes.Equal(b, in) {
			t.Fatalf("*[]byte: %v", err)
		}
		out.Free()
	}
	// Multi-buffer messages are flattened on demand.
	bs := mem.BufferSlice{mem.SliceBuffer("ab"), mem.SliceBuffer("cd")}
	var m Message
	if err := c.Unmarshal(bs, &m); err != nil || string(m.Bytes()) != "abcd" {
		t.Fatalf("multi: %q %v", m.Bytes(), err)
	}
	m.Free()
	if _, err := c.Marshal(42); !errors.Is(err, ErrType) {
		t.Fatalf("int: %v", err)
	}
	if err := c.Unmarshal(nil, new(string)); !errors.Is(err, ErrType) {
		t.Fatalf("string: %v", err)
	}
	out, _ := c.Marshal([]byte("raw"))
	if string(out.Materialize()) != "raw" {
		t.Fatal("[]byte marshal")
	}
}

func BenchmarkMarshalUnmarshal(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(strconvI(size), func(b *testing.B) {
			var c Codec
			in := bytes.Repeat([]byte("x"), size)
			var m, out Message
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				m.SetBytes(in)
				bs, _ := c.Marshal(&m)
				_ = c.Unmarshal(bs, &out)
				bs.Free()
				_ = out.Bytes()
				out.Free()
			}
		})
	}
}

func strconvI(n int) string {
	if n >= 1024 {
		return string(rune('0'+n/1024)) + "KiB"
	}
	return "64B"
}

func TestProtoFallback(t *testing.T) {
	var c Codec
	in := wrapperspb.String("generated")
	bs, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out wrapperspb.StringValue
	if err := c.Unmarshal(bs, &out); err != nil || out.GetValue() != "generated" {
		t.Fatalf("proto fallback: %v %v", out.GetValue(), err)
	}
}
