package mapping

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
)

// TestRequestMDReused: one RequestMD filled from different frames in
// turn (as a pooled request is) gives each frame's metadata exactly:
// repeated application keys keep every value in order, more keys than
// the one-value slots still work, nothing of the previous frame is left.
func TestRequestMDReused(t *testing.T) {
	app := func(k uint16, v string) codec.Ext { return codec.Ext{Key: k, Value: []byte(v)} }
	many := []codec.Ext{}
	want := metadata.MD{MDUIN: {"200"}}
	for i := range 12 {
		k := uint16(0x8000 + i)
		many = append(many, app(k, fmt.Sprint("v", i)))
		want[ExtMDKey(k)] = []string{fmt.Sprint("v", i)}
	}
	cases := []struct {
		f    codec.Frame
		want metadata.MD
	}{
		{codec.Frame{UIN: 123456789, Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc")}, app(0x8001, "a"), app(0x8002, "b"), app(0x8001, "c")}},
			metadata.MD{MDUIN: {"123456789"}, MDCaller: {"svc"}, "x-mgp-ext-32769-bin": {"a", "c"}, "x-mgp-ext-32770-bin": {"b"}}},
		{codec.Frame{UIN: 5, Ext: []codec.Ext{app(0x8002, "x")}},
			metadata.MD{MDUIN: {"5"}, "x-mgp-ext-32770-bin": {"x"}}},
		{codec.Frame{UIN: 200, Ext: many}, want},
		{codec.Frame{UIN: 123456789, Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("other")}}},
			metadata.MD{MDUIN: {"123456789"}, MDCaller: {"other"}}},
		{codec.Frame{}, metadata.MD{}},
	}
	m := NewRequestMD()
	for round := range 2 {
		for i, c := range cases {
			m.FromFrame(&c.f, 0, false)
			if got, w := fmt.Sprint(m.MD), fmt.Sprint(c.want); got != w {
				t.Errorf("round %d frame %d: %s, want %s", round, i, got, w)
			}
			m.Reset()
		}
	}
}

// TestRequestMDAllocs: a frame with the uin, caller and application key
// of the last costs only its application value's string.
func TestRequestMDAllocs(t *testing.T) {
	f := codec.Frame{UIN: 123456789, Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc-a")}, {Key: 0x8001, Value: []byte("val")}}}
	m := NewRequestMD()
	m.FromFrame(&f, 7, true)
	m.Reset()
	if n := testing.AllocsPerRun(100, func() {
		m.FromFrame(&f, 7, true)
		m.Reset()
	}); n > 1 {
		t.Fatalf("%v allocations per frame, want at most 1 (the value)", n)
	}
}
