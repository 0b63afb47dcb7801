package rawcodec

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
)

// TestSetBytesPooled: every size round-trips through SetBytes, Marshal
// (take: a slice of the transport's own) and TakeInto; and a body of up to
// 1 KiB, which mem.Copy copied to a new slice, allocates nothing once the
// pools are warm.
func TestSetBytesPooled(t *testing.T) {
	for _, n := range []int{0, 1, 16, 1024, 1025, 5000} {
		in := bytes.Repeat([]byte{byte(n)}, n)
		var m Message
		m.SetBytes(in)
		if !bytes.Equal(m.Bytes(), in) || m.Len() != n {
			t.Fatalf("%d bytes: got %d", n, m.Len())
		}
		bs, err := Codec{}.Marshal(&m)
		if err != nil || !bytes.Equal(bs.Materialize(), in) || m.Len() != 0 {
			t.Fatalf("%d bytes: Marshal %v", n, err)
		}
		m.SetBytes(in) // m reused while the transport holds bs: bs unchanged
		if !bytes.Equal(bs.Materialize(), in) || &bs[0] == &m.one[0] {
			t.Fatalf("%d bytes: the taken slice is m's storage", n)
		}
		bs.Free()
		var dst [1]mem.Buffer
		d := m.TakeInto(&dst)
		if !bytes.Equal(d.Materialize(), in) || m.Len() != 0 {
			t.Fatalf("%d bytes: TakeInto", n)
		}
		d.Free()
	}
	body := make([]byte, 1024)
	var m Message
	if a := testing.AllocsPerRun(100, func() {
		m.SetBytes(body)
		var dst [1]mem.Buffer
		m.TakeInto(&dst).Free()
	}); a != 0 {
		t.Fatalf("%v allocations per SetBytes + TakeInto of 1 KiB", a)
	}
}
