package mapping

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
)

// RequestMD is the gRPC request metadata of one bridged frame. It reuses
// its storage: keep one per pooled request and call Reset between uses.
type RequestMD struct {
	// MD is the outgoing metadata (metadata.NewOutgoingContext).
	MD metadata.MD
	// one-value backing arrays for the fixed keys, so that setting them
	// does not allocate a slice each time.
	vals [4][1]string
	// the last uin and key id formatted (kept by Reset): the same caller
	// again costs no string
	uin, keyID       uint64
	uinStr, keyIDStr string
	caller           string // the last caller (ext 4)
	// application extensions: the metadata keys of the last few
	// extension keys (kept by Reset), and one-value backing arrays for
	// the values of the first keys of a frame
	extKeys [4]extKey
	extNext int
	extVals [8][1]string
	nExt    int
}

type extKey struct {
	k uint16
	s string
}

// extMDKey is ExtMDKey(k), reusing the string of a recent key.
func (m *RequestMD) extMDKey(k uint16) string {
	for i := range m.extKeys {
		if e := &m.extKeys[i]; e.s != "" && e.k == k {
			return e.s
		}
	}
	s := ExtMDKey(k)
	m.extKeys[m.extNext] = extKey{k, s}
	m.extNext = (m.extNext + 1) % len(m.extKeys)
	return s
}

// formatCached is v in decimal, reusing *s when v is *last.
func formatCached(v uint64, last *uint64, s *string) string {
	if *s == "" || *last != v {
		*last, *s = v, strconv.FormatUint(v, 10)
	}
	return *s
}

// NewRequestMD returns an empty RequestMD.
func NewRequestMD() *RequestMD { return &RequestMD{MD: make(metadata.MD, 4)} }

func (m *RequestMD) set(i int, k, v string) {
	m.vals[i][0] = v
	m.MD[k] = m.vals[i][:1:1]
}

// FromFrame fills m from request frame f (private → gRPC). keyID is the
// verified auth key id, sent as x-mgp-key-id when authed. It returns the
// timeout carried in ext 3, if any. Extensions below 0x8000 other than
// 1, 3 and 4 are dropped (conversion path), ext 2 never travels.
func (m *RequestMD) FromFrame(f *codec.Frame, keyID uint32, authed bool) (timeout time.Duration, hasDeadline bool) {
	if f.UIN != 0 {
		m.set(0, MDUIN, formatCached(f.UIN, &m.uin, &m.uinStr))
	}
	if authed {
		m.set(1, MDKeyID, formatCached(uint64(keyID), &m.keyID, &m.keyIDStr))
	}
	for i := range f.Ext {
		e := &f.Ext[i]
		switch {
		case e.Key == codec.ExtTraceparent:
			m.set(2, MDTraceparent, string(e.Value))
		case e.Key == codec.ExtCaller:
			if string(e.Value) != m.caller { // compared without a copy
				m.caller = string(e.Value)
			}
			m.set(3, MDCaller, m.caller)
		case e.Key >= codec.ExtAppMin:
			k, v := m.extMDKey(e.Key), string(e.Value)
			if vs, ok := m.MD[k]; ok || m.nExt == len(m.extVals) {
				m.MD[k] = append(vs, v) // a one-value slot's slice grows into a new array
				break
			}
			m.extVals[m.nExt][0] = v
			m.MD[k] = m.extVals[m.nExt][:1:1]
			m.nExt++
		}
	}
	return Timeout(f)
}

// Reset empties m for reuse.
func (m *RequestMD) Reset() {
	clear(m.MD)
	m.vals = [4][1]string{}
	m.extVals = [8][1]string{}
	m.nExt = 0
}

// RequestFrame fills request frame f's uin and extensions from incoming
// metadata (gRPC → private). Extension values alias md's strings: md must
// outlive the encoding of f. x-mgp-key-id is not trusted from a gRPC caller
// and is not carried. A bad x-mgp-uin or x-mgp-ext-*-bin key is an error
// wrapping ErrMetadata (the caller answers INVALID_ARGUMENT).
func RequestFrame(md metadata.MD, f *codec.Frame) error {
	if v := md[MDUIN]; len(v) > 0 {
		uin, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return fmt.Errorf("%w: %s must be a decimal uint64", ErrMetadata, MDUIN)
		}
		f.UIN = uin
	}
	if v := md[MDTraceparent]; len(v) > 0 {
		f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtTraceparent, Value: bytesOf(v[0])})
	}
	if v := md[MDCaller]; len(v) > 0 {
		f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtCaller, Value: bytesOf(v[0])})
	}
	return appendExts(md, f, true)
}

// appendExts appends one extension per value of every x-mgp-ext-<k>-bin
// key of md. strict makes a malformed key an error; otherwise it is
// skipped (replies cannot be refused).
func appendExts(md metadata.MD, f *codec.Frame, strict bool) error {
	for k, vs := range md {
		key, isExt, err := ParseExtMDKey(k)
		if !isExt {
			continue
		}
		if err != nil {
			if strict {
				return err
			}
			continue
		}
		for _, v := range vs {
			f.Ext = append(f.Ext, codec.Ext{Key: key, Value: bytesOf(v)})
		}
	}
	return nil
}
