package mapping

import (
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
)

// MDMap is a listener's configured extension ⇄ metadata pairs
// (listeners[].metadata): application extension Ext travels as metadata
// key Key instead of x-mgp-ext-<Ext>-bin, in both directions and on
// replies. A nil *MDMap maps nothing (every method is a no-op).
//
// Keys ending in -bin carry any bytes; other keys carry printable ASCII
// (grpc-go refuses anything else when sending, and the call fails with
// INTERNAL naming the key). A reply pair marked trailer goes into the gRPC
// trailers instead of the headers; on the way back both are read.
type MDMap struct {
	pairs []config.MetadataPair
	byExt map[uint16]int
	byKey map[string]int
	ext   []string // x-mgp-ext-<k>-bin of each pair
}

// NewMDMap returns the map for pairs, or nil when there are none.
func NewMDMap(pairs []config.MetadataPair) *MDMap {
	if len(pairs) == 0 {
		return nil
	}
	m := &MDMap{pairs: pairs, byExt: map[uint16]int{}, byKey: map[string]int{}}
	for i, p := range pairs {
		m.byExt[p.Ext] = i
		m.byKey[p.Key] = i
		m.ext = append(m.ext, ExtMDKey(p.Ext))
	}
	return m
}

// RequestToMD moves the mapped extensions of request frame f into md under
// their keys (private → gRPC), replacing the x-mgp-ext-<k>-bin entries
// RequestMD.FromFrame made for them.
func (m *MDMap) RequestToMD(f *codec.Frame, md metadata.MD) {
	if m == nil {
		return
	}
	for i, p := range m.pairs {
		if _, ok := md[m.ext[i]]; !ok {
			continue
		}
		delete(md, m.ext[i])
		var vs []string
		for j := range f.Ext {
			if f.Ext[j].Key == p.Ext {
				vs = append(vs, string(f.Ext[j].Value))
			}
		}
		md[p.Key] = vs
	}
}

// RequestFromMD appends an extension for every value of a mapped key of
// incoming md to request frame f (gRPC → private). Values alias md.
func (m *MDMap) RequestFromMD(md metadata.MD, f *codec.Frame) {
	if m == nil {
		return
	}
	for _, p := range m.pairs {
		for _, v := range md[p.Key] {
			f.Ext = append(f.Ext, codec.Ext{Key: p.Ext, Value: bytesOf(v)})
		}
	}
}

// ReplyFromMD appends an extension for every value of a mapped key in the
// response header or trailer to reply frame out (private → gRPC side's
// reply). Values alias the metadata.
func (m *MDMap) ReplyFromMD(out *codec.Frame, header, trailer metadata.MD) {
	if m == nil {
		return
	}
	for _, p := range m.pairs {
		for _, v := range header[p.Key] {
			out.Ext = append(out.Ext, codec.Ext{Key: p.Ext, Value: bytesOf(v)})
		}
		for _, v := range trailer[p.Key] {
			out.Ext = append(out.Ext, codec.Ext{Key: p.Ext, Value: bytesOf(v)})
		}
	}
}

// ReplyToMD moves the mapped extensions of reply frame resp from header
// (as built by ReplyHeader; may be nil) to their keys, in the header or,
// for pairs marked trailer, in the returned trailer (gRPC → private side's
// reply).
func (m *MDMap) ReplyToMD(resp *codec.Frame, header metadata.MD) (hdr, trailer metadata.MD) {
	if m == nil {
		return header, nil
	}
	hdr = header
	for i := range resp.Ext {
		e := &resp.Ext[i]
		j, ok := m.byExt[e.Key]
		if !ok {
			continue
		}
		p := m.pairs[j]
		if hdr != nil {
			delete(hdr, m.ext[j])
		}
		dst := &hdr
		if p.Trailer {
			dst = &trailer
		}
		if *dst == nil {
			*dst = metadata.MD{}
		}
		(*dst)[p.Key] = append((*dst)[p.Key], string(e.Value))
	}
	if len(hdr) == 0 {
		hdr = nil
	}
	return hdr, trailer
}
