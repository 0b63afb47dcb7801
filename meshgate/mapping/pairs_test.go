package mapping

import (
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
)

// TestMDMapRoundTrip: a configured pair moves an extension to its key and
// back on requests and replies, in the header or the trailer as asked;
// other application extensions keep x-mgp-ext-<k>-bin.
func TestMDMapRoundTrip(t *testing.T) {
	mm := NewMDMap([]config.MetadataPair{{Ext: 0x8001, Key: "x-request-id"}, {Ext: 0x8002, Key: "x-t-bin", Trailer: true}})
	f := &codec.Frame{Cmd: 1, Ext: []codec.Ext{{Key: 0x8001, Value: []byte("r1")}, {Key: 0x8003, Value: []byte("o")}, {Key: 0x8001, Value: []byte("r2")}}}
	rm := NewRequestMD()
	rm.FromFrame(f, 0, false)
	mm.RequestToMD(f, rm.MD)
	if v := rm.MD["x-request-id"]; len(v) != 2 || v[0] != "r1" || v[1] != "r2" {
		t.Fatalf("x-request-id %q in %v", v, rm.MD)
	}
	if _, ok := rm.MD[ExtMDKey(0x8001)]; ok {
		t.Fatal("mapped extension also kept as x-mgp-ext")
	}
	if v := rm.MD[ExtMDKey(0x8003)]; len(v) != 1 {
		t.Fatalf("unmapped extension lost: %v", rm.MD)
	}
	// gRPC → private: the key becomes the extension again.
	var g codec.Frame
	if err := RequestFrame(rm.MD, &g); err != nil {
		t.Fatal(err)
	}
	mm.RequestFromMD(rm.MD, &g)
	var got []string
	for _, e := range g.Ext {
		if e.Key == 0x8001 {
			got = append(got, string(e.Value))
		}
	}
	if len(got) != 2 {
		t.Fatalf("request ext 0x8001 %q", got)
	}
	// Reply: private → gRPC puts 0x8002 in the trailer.
	resp := &codec.Frame{Ext: []codec.Ext{{Key: 0x8001, Value: []byte("h")}, {Key: 0x8002, Value: []byte{0xff}}, {Key: 0x8003, Value: []byte("o")}}}
	hdr, trl := mm.ReplyToMD(resp, ReplyHeader(resp))
	if hdr["x-request-id"][0] != "h" || trl["x-t-bin"][0] != "\xff" || len(hdr[ExtMDKey(0x8003)]) != 1 || len(hdr) != 2 || len(trl) != 1 {
		t.Fatalf("reply header %v trailer %v", hdr, trl)
	}
	// ...and gRPC → private reads both back.
	var out codec.Frame
	ReplyFrame(&out, nil, nil, hdr, trl)
	mm.ReplyFromMD(&out, hdr, trl)
	keys := map[uint16]int{}
	for _, e := range out.Ext {
		keys[e.Key]++
	}
	if keys[0x8001] != 1 || keys[0x8002] != 1 || keys[0x8003] != 1 {
		t.Fatalf("reply exts %v", out.Ext)
	}
}

func TestNilMDMapNoAllocs(t *testing.T) {
	var mm *MDMap
	if NewMDMap(nil) != nil {
		t.Fatal("no pairs should be a nil map")
	}
	f := &codec.Frame{Ext: []codec.Ext{{Key: 0x8001, Value: []byte("a")}}}
	md := metadata.MD{}
	if n := testing.AllocsPerRun(100, func() {
		mm.RequestToMD(f, md)
		mm.RequestFromMD(md, f)
		mm.ReplyFromMD(f, md, md)
		_, _ = mm.ReplyToMD(f, nil)
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
