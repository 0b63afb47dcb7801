package inbound

import (
	"errors"
	"sync"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// verify checks the MGP auth extension of raw (the frame's wire bytes). ok
// is the verdict; fatal means the extension is present but malformed (the
// connection closes).
func (s *Server) verify(p *AuthPolicy, raw []byte, f *codec.Frame) (keyID uint32, ok, fatal bool) {
	v, present := f.ExtValue(codec.ExtAuth)
	if !present {
		return 0, false, false
	}
	a, err := mgp.ParseAuth(v)
	if err != nil {
		return 0, false, true
	}
	key, known := p.Keys[a.KeyID]
	if !known {
		return a.KeyID, false, false
	}
	if _, err := mgp.VerifyAuth(raw, key); err != nil {
		return a.KeyID, false, errors.Is(err, mgp.ErrAuthMalformed)
	}
	now := s.opts.Now()
	ts := time.UnixMilli(int64(a.UnixMs))
	if d := now.Sub(ts); d > p.MaxSkew || d < -p.MaxSkew {
		return a.KeyID, false, false
	}
	if !s.nonce.add(a.KeyID, a.Nonce) {
		return a.KeyID, false, false
	}
	return a.KeyID, true, false
}

// nonceCache remembers recently seen (key id, nonce) pairs, FIFO-bounded. A
// replay is caught while its original is among the last size frames; frames
// older than MaxSkew are rejected by timestamp anyway.
type nonceCache struct {
	mu   sync.Mutex
	seen map[[2]uint64]struct{}
	ring [][2]uint64
	head int
	full bool
}

func newNonceCache(size int) *nonceCache {
	return &nonceCache{seen: make(map[[2]uint64]struct{}, size), ring: make([][2]uint64, size)}
}

// add records the pair; false if it was already present.
func (n *nonceCache) add(keyID uint32, nonce uint64) bool {
	k := [2]uint64{uint64(keyID), nonce}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, dup := n.seen[k]; dup {
		return false
	}
	if n.full {
		delete(n.seen, n.ring[n.head])
	}
	n.ring[n.head] = k
	n.seen[k] = struct{}{}
	n.head++
	if n.head == len(n.ring) {
		n.head, n.full = 0, true
	}
	return true
}
