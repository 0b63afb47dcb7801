package mgp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"

	"github.com/meshgate/meshgate/codec"
)

// Key is an HMAC-SHA256 secret prepared for signing and verifying MGP
// frames without allocating: MAC states are pooled (sync.Pool) and each use
// resets one to its precomputed ipad/opad state instead of rehashing the
// key. A Key is safe for concurrent use; build one per secret and keep it
// (NewKey itself allocates).
type Key struct {
	pool sync.Pool // *macState
}

// macState is one reusable HMAC with room for its sum, so that Sum does
// not make a heap slice.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// zeroMAC stands in for the MAC bytes while computing a frame's MAC.
var zeroMAC [sha256.Size]byte

// placeholder is the auth extension value Sign encodes before it patches
// the real one into the output; it is only ever read.
var placeholder [AuthSize]byte

// NewKey prepares secret (copied) for Sign and Verify.
func NewKey(secret []byte) *Key {
	s := append([]byte(nil), secret...)
	k := &Key{}
	k.pool.New = func() any { return &macState{h: hmac.New(sha256.New, s)} }
	return k
}

func (k *Key) get() *macState {
	st := k.pool.Get().(*macState)
	st.h.Reset()
	return st
}

// Verify checks the auth extension of a whole encoded frame, reading the
// frame in place (no copy, no allocation). It returns the parsed
// extension; ErrAuthMissing when the frame has none, ErrAuthMalformed when
// it is truncated or the wrong size, ErrAuthBadMAC when the MAC does not
// match.
func (k *Key) Verify(frame []byte) (Auth, error) {
	off, l, ok := authOffset(frame)
	if !ok {
		return Auth{}, ErrAuthMissing
	}
	a, err := ParseAuth(frame[off : off+l])
	if err != nil {
		return a, err
	}
	if !k.Check(frame, off) {
		return a, ErrAuthBadMAC
	}
	return a, nil
}

// Check reports whether the MAC of the auth extension whose value starts
// at off in frame (as located by AuthOffset, AuthSize bytes long) is
// right. It does not allocate.
func (k *Key) Check(frame []byte, off int) bool {
	if off < HeaderSize || off+AuthSize > len(frame) {
		return false
	}
	st := k.get()
	st.h.Write(frame[:off+20])
	st.h.Write(zeroMAC[:])
	st.h.Write(frame[off+AuthSize:])
	good := hmac.Equal(st.h.Sum(st.sum[:0]), frame[off+20:off+AuthSize])
	k.pool.Put(st)
	return good
}

// AuthOffset returns the offset of the auth extension value in an encoded
// frame and its length (clipped to the header), ok false when absent.
func AuthOffset(frame []byte) (off, l int, ok bool) { return authOffset(frame) }

// SignKey appends the encoding of f to dst with an auth extension (key 2)
// whose HMAC-SHA256 under k covers the whole frame with the MAC bytes
// zeroed. Any existing auth extension in f is replaced; afterwards f's auth
// extension value is the signed value inside the returned buffer (on error
// it is empty). It does not allocate when dst has room and f.Ext has room
// for the extension.
func (c *Codec) SignKey(dst []byte, f *codec.Frame, keyID uint32, k *Key, unixMs, nonce uint64) ([]byte, error) {
	f.SetExt(codec.ExtAuth, placeholder[:])
	start := len(dst)
	out, err := c.Append(dst, f)
	if err != nil {
		f.SetExt(codec.ExtAuth, nil)
		return dst, err
	}
	frame := out[start:]
	off, l, ok := authOffset(frame)
	if !ok || l != AuthSize {
		f.SetExt(codec.ExtAuth, nil)
		return dst, ErrAuthMalformed
	}
	v := frame[off : off+AuthSize : off+AuthSize]
	binary.BigEndian.PutUint32(v[0:], keyID)
	binary.BigEndian.PutUint64(v[4:], unixMs)
	binary.BigEndian.PutUint64(v[12:], nonce)
	clear(v[20:])
	st := k.get()
	st.h.Write(frame)
	copy(v[20:], st.h.Sum(st.sum[:0]))
	k.pool.Put(st)
	f.SetExt(codec.ExtAuth, v)
	return out, nil
}
