package mgp

import (
	"encoding/binary"
	"errors"

	"github.com/meshgate/meshgate/codec"
)

// AuthSize is the length of the auth extension value (key 2):
// key_id u32, unix_ms u64, nonce u64, hmac_sha256 [32].
const AuthSize = 4 + 8 + 8 + 32

// Auth errors.
var (
	ErrAuthMissing   = errors.New("mgp: auth extension missing")
	ErrAuthMalformed = errors.New("mgp: auth extension truncated or malformed")
	ErrAuthBadMAC    = errors.New("mgp: auth HMAC mismatch")
)

// Auth is a decoded auth extension.
type Auth struct {
	KeyID  uint32
	UnixMs uint64
	Nonce  uint64
	MAC    [32]byte
}

// ParseAuth decodes an auth extension value.
func ParseAuth(v []byte) (Auth, error) {
	var a Auth
	if len(v) != AuthSize {
		return a, ErrAuthMalformed
	}
	a.KeyID = binary.BigEndian.Uint32(v[0:])
	a.UnixMs = binary.BigEndian.Uint64(v[4:])
	a.Nonce = binary.BigEndian.Uint64(v[12:])
	copy(a.MAC[:], v[20:])
	return a, nil
}

// Sign appends the encoding of f to dst with an auth extension (key 2) whose
// HMAC-SHA256 covers the whole frame with the MAC bytes zeroed. Any existing
// auth extension in f is replaced. f.Ext is modified. It prepares key on
// every call; hot paths keep a Key and call SignKey.
func (c *Codec) Sign(dst []byte, f *codec.Frame, keyID uint32, key []byte, unixMs, nonce uint64) ([]byte, error) {
	return c.SignKey(dst, f, keyID, NewKey(key), unixMs, nonce)
}

// VerifyAuth checks the auth extension of a whole encoded frame against
// key (see Key.Verify). It prepares key on every call; hot paths keep a Key.
func VerifyAuth(frame []byte, key []byte) (Auth, error) {
	return NewKey(key).Verify(frame)
}

// authOffset finds the value offset and length of the auth extension
// within an encoded frame. ok is false when it is absent. An auth entry
// whose value runs past header_len is reported with the length that fits,
// so that VerifyAuth calls it malformed rather than missing.
func authOffset(frame []byte) (off, l int, ok bool) {
	if len(frame) < HeaderSize {
		return 0, 0, false
	}
	hl := int(binary.BigEndian.Uint16(frame[2:4]))
	if hl > len(frame) {
		return 0, 0, false
	}
	for off = HeaderSize; off+4 <= hl; {
		key := binary.BigEndian.Uint16(frame[off:])
		l = int(binary.BigEndian.Uint16(frame[off+2:]))
		if key == 0 {
			return 0, 0, false
		}
		off += 4
		if key == codec.ExtAuth {
			return off, min(l, hl-off), true
		}
		if off+l > hl {
			return 0, 0, false
		}
		off += l
	}
	return 0, 0, false
}

// Deadline returns the deadline extension (remaining milliseconds).
func Deadline(f *codec.Frame) (ms uint32, ok bool) {
	v, ok := f.ExtValue(codec.ExtDeadline)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// PutDeadline encodes ms for a deadline extension into b and returns it.
func PutDeadline(b *[4]byte, ms uint32) []byte {
	binary.BigEndian.PutUint32(b[:], ms)
	return b[:]
}
