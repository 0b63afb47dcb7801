package mgp

import (
	"testing"

	"github.com/meshgate/meshgate/codec"
)

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{64, 1 << 10, 16 << 10} {
		f := codec.Frame{Cmd: 1001, Seq: 7, UIN: 1, Ext: []codec.Ext{{Key: codec.ExtDeadline, Value: []byte{0, 0, 1, 0}}}, Body: make([]byte, n)}
		wire, _ := New(0).Append(nil, &f)
		b.Run(sizeName(n), func(b *testing.B) {
			c := New(0)
			var g codec.Frame
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Decode(wire, &g); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{64, 1 << 10, 16 << 10} {
		f := codec.Frame{Cmd: 1001, Seq: 7, UIN: 1, Ext: []codec.Ext{{Key: codec.ExtDeadline, Value: []byte{0, 0, 1, 0}}}, Body: make([]byte, n)}
		b.Run(sizeName(n), func(b *testing.B) {
			c := New(0)
			dst := make([]byte, 0, n+64)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = c.Append(dst[:0], &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignVerify signs and verifies with prepared keys (the hot path):
// 0 allocs/op.
func BenchmarkSignVerify(b *testing.B) {
	f := codec.Frame{Cmd: 1, Body: make([]byte, 256), Ext: make([]codec.Ext, 0, 2)}
	c := New(0)
	dst := make([]byte, 0, 512)
	key := NewKey([]byte("0123456789abcdef"))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = c.SignKey(dst[:0], &f, 1, key, 1, 2); err != nil {
			b.Fatal(err)
		}
		if _, err := key.Verify(dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	for _, n := range []int{64, 1 << 10, 16 << 10} {
		b.Run(sizeName(n), func(b *testing.B) {
			f := codec.Frame{Cmd: 1, Body: make([]byte, n), Ext: make([]codec.Ext, 0, 2)}
			c := New(0)
			dst := make([]byte, 0, n+128)
			key := NewKey([]byte("0123456789abcdef"))
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = c.SignKey(dst[:0], &f, 1, key, 1, 2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{64, 1 << 10, 16 << 10} {
		b.Run(sizeName(n), func(b *testing.B) {
			f := codec.Frame{Cmd: 1, Body: make([]byte, n)}
			key := NewKey([]byte("0123456789abcdef"))
			wire, err := New(0).SignKey(nil, &f, 1, key, 1, 2)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := key.Verify(wire); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<10:
		return itoa(n>>10) + "KB"
	default:
		return itoa(n) + "B"
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
