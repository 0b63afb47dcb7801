package stream

import (
	"testing"

	"github.com/meshgate/meshgate/codec"
)

// TestExchangeExt: AddExt keeps copies of application extensions only (not
// the frame's ext 5 or deadline), at most MaxExt, and TakeExt hands them
// over once.
func TestExchangeExt(t *testing.T) {
	e := New(Limits{})
	buf := []byte("hdr")
	e.AddExt([]codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte("m")}, {Key: 0x8001, Value: buf}, {Key: codec.ExtDeadline, Value: []byte{0, 0, 0, 1}}})
	buf[0] = 'X' // the frame's buffer is reused after dispatch
	got := e.TakeExt()
	if len(got) != 1 || got[0].Key != 0x8001 || string(got[0].Value) != "hdr" {
		t.Fatalf("TakeExt = %v", got)
	}
	if got := e.TakeExt(); got != nil {
		t.Fatalf("second TakeExt = %v", got)
	}
	many := make([]codec.Ext, MaxExt+5)
	for i := range many {
		many[i] = codec.Ext{Key: codec.ExtAppMin + uint16(i)}
	}
	e.AddExt(many)
	e.AddExt(many[:1])
	if got := e.TakeExt(); len(got) != MaxExt {
		t.Fatalf("kept %d extensions, want %d", len(got), MaxExt)
	}
}

// BenchmarkExchangeAddExtNone: a reply frame without application
// extensions (the common case) costs the stream path nothing.
func BenchmarkExchangeAddExtNone(b *testing.B) {
	e := New(Limits{})
	ext := []codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte("m")}}
	b.ReportAllocs()
	for b.Loop() {
		e.AddExt(nil)
		e.AddExt(ext)
	}
	if e.TakeExt() != nil {
		b.Fatal("kept a non-application extension")
	}
}
