package mgp

import (
	"testing"

	"github.com/meshgate/meshgate/codec"
)

// FuzzVerify: Verify never panics on arbitrary bytes; a frame signed from
// fuzzed fields verifies, and flipping any one of its bytes (header,
// extensions, auth fields, MAC, body, etx) makes it fail.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("hello"), uint32(7), uint64(1_700_000_000_000), uint64(1), uint16(3), []byte("garbage"))
	f.Add([]byte{}, uint32(0), uint64(0), uint64(0), uint16(0), hx(helloHex))
	key := NewKey([]byte("fuzz-secret"))
	c := New(fuzzMax)
	f.Fuzz(func(t *testing.T, body []byte, keyID uint32, ts, nonce uint64, flip uint16, junk []byte) {
		_, _ = key.Verify(junk) // must not panic
		fr := codec.Frame{Cmd: keyID ^ 0x55, Seq: uint32(nonce), UIN: ts, Body: body,
			Ext: []codec.Ext{{Key: codec.ExtCaller, Value: junk[:min(len(junk), 64)]}}}
		wire, err := c.SignKey(nil, &fr, keyID, key, ts, nonce)
		if err != nil {
			return // not encodable (too large)
		}
		a, err := key.Verify(wire)
		if err != nil || a.KeyID != keyID || a.UnixMs != ts || a.Nonce != nonce {
			t.Fatalf("fresh signature: %+v %v", a, err)
		}
		i := int(flip) % len(wire)
		wire[i] ^= 1 << (flip % 8)
		if _, err := key.Verify(wire); err == nil {
			t.Fatalf("byte %d of %d flipped, still verifies", i, len(wire))
		}
	})
}
