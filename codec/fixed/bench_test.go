package fixed

import (
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

var benchSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KB", 1 << 10}, {"16KB", 16 << 10}}

func benchFrame(n int) codec.Frame {
	return codec.Frame{Cmd: 1001, Seq: 7, UIN: 123456789, Flags: codec.FlagOneway,
		Ext:  []codec.Ext{{Key: codec.ExtDeadline, Value: []byte{0, 0, 0x13, 0x88}}},
		Body: make([]byte, n)}
}

// BenchmarkCodec compares the built-in MGP/1 codec with the declarative
// one built from testdata/mgp.yaml in the same run: decode into a reused
// Frame, encode into a reused buffer. SetBytes is the body size.
func BenchmarkCodec(b *testing.B) {
	decl := mustLoad(b, "mgp.yaml", 0)
	for _, impl := range []struct {
		name string
		c    codec.Codec
	}{{"builtin", mgp.New(0)}, {"declarative", decl}} {
		for _, sz := range benchSizes {
			f := benchFrame(sz.n)
			wire, err := impl.c.Append(nil, &f)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(impl.name+"/decode/"+sz.name, func(b *testing.B) {
				var g codec.Frame
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := impl.c.Decode(wire, &g); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(impl.name+"/append/"+sz.name, func(b *testing.B) {
				dst := make([]byte, 0, len(wire))
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					if dst, err = impl.c.Append(dst[:0], &f); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLE16 measures the little-endian length-first description.
func BenchmarkLE16(b *testing.B) {
	c := mustLoad(b, "le16.yaml", 0)
	for _, sz := range benchSizes {
		f := benchFrame(sz.n)
		wire, err := c.Append(nil, &f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("decode/"+sz.name, func(b *testing.B) {
			var g codec.Frame
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Decode(wire, &g); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("append/"+sz.name, func(b *testing.B) {
			dst := make([]byte, 0, len(wire))
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			for b.Loop() {
				if dst, err = c.Append(dst[:0], &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
