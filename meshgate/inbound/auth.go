package inbound

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
)

// AuthPolicy is a listener's HMAC requirement.
type AuthPolicy struct {
	Keys    map[uint32][]byte
	MaxSkew time.Duration
	// MaxNonces bounds the replay cache; at the bound new frames are
	// refused (result 3). Default config.DefaultMaxNonces(MaxSkew).
	MaxNonces int
	// MaxNoncesPerKey bounds the nonces of one key id, so one key holder
	// cannot fill the cache for the others; at the bound its new frames
	// are refused (result 3). Default MaxNonces/2 with several keys,
	// MaxNonces with one.
	MaxNoncesPerKey int

	once sync.Once
	keys map[uint32]authKey
}

// authKey is a prepared key: pooled MAC states and the namespace of its
// nonces in the replay cache.
type authKey struct {
	mac *mgp.Key
	ns  uint64
}

// prepare builds the pooled MAC states once per policy.
func (p *AuthPolicy) prepare() {
	p.keys = make(map[uint32]authKey, len(p.Keys))
	for id, k := range p.Keys {
		p.keys[id] = authKey{mac: mgp.NewKey(k), ns: nonceNamespace(id, k)}
	}
	if p.MaxSkew <= 0 {
		p.MaxSkew = config.DefaultMaxSkew
	}
	if p.MaxNonces <= 0 {
		p.MaxNonces = config.DefaultMaxNonces(p.MaxSkew)
	}
	if p.MaxNoncesPerKey <= 0 {
		p.MaxNoncesPerKey = config.DefaultMaxNoncesPerKey(p.MaxNonces, len(p.Keys))
	}
}

// ReplayCache is the memory of accepted nonces. The private listeners of
// one process share one (Options.Replay): a frame accepted by one listener
// is a replay on every listener that has its key, and a listener rebuilt or
// re-added by a reload forgets nothing.
type ReplayCache struct{ c *nonceCache }

// nonceNamespace names the nonces of key id with secret in a replay
// cache: the same key on two listeners shares them, another secret under
// the same id does not. It is a MAC, so it reveals nothing of the secret.
func nonceNamespace(id uint32, secret []byte) uint64 {
	m := hmac.New(sha256.New, secret)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], id)
	m.Write([]byte("meshgate replay namespace\x00"))
	m.Write(b[:])
	return binary.BigEndian.Uint64(m.Sum(nil))
}

// NewReplayCache returns an empty replay cache, to be shared by the
// private listeners of one process (Options.Replay).
// Frames stamped before it was created are refused.
func NewReplayCache() *ReplayCache { return &ReplayCache{newNonceCache(time.Now().UnixMilli())} }

// authState is a Server's replay cache (kept across table swaps, so a
// reload never forgets a nonce) and its failure counters.
type authState struct {
	nonces   *nonceCache
	failures [len(authz.Reasons)]prometheus.Counter // by authz.Reasons index
}

func (a *authState) init(s *Server) {
	if r := s.opts.Replay; r != nil && r.c != nil {
		a.nonces = r.c
	} else {
		a.nonces = newNonceCache(s.opts.Now().UnixMilli())
	}
	if m := s.opts.Metrics; m != nil {
		v := authz.Failures(m.Registry)
		for i, r := range authz.Reasons {
			a.failures[i] = v.WithLabelValues(s.opts.Name, r)
		}
	}
}

// failed counts an authentication or authorization failure.
func (a *authState) failed(reason string) {
	for i, r := range authz.Reasons {
		if r == reason {
			if c := a.failures[i]; c != nil {
				c.Inc()
			}
			return
		}
	}
}

// verify checks the MGP auth extension of raw (the frame's wire bytes,
// read in place). reason is "" when the frame is authentic, fresh and not a
// replay; authz.ReasonMalformed means the extension is present but
// malformed (the connection closes). The order is cheap to expensive, and
// only a frame with a good MAC and a timestamp inside the window reaches
// the replay cache: bad frames cannot fill it.
func (s *Server) verify(p *AuthPolicy, raw []byte, f *codec.Frame) (keyID uint32, reason string) {
	p.once.Do(p.prepare)
	off, l, present := mgp.AuthOffset(raw)
	if !present {
		return 0, authz.ReasonMissing
	}
	a, err := mgp.ParseAuth(raw[off : off+l])
	if err != nil {
		return 0, authz.ReasonMalformed
	}
	key, known := p.keys[a.KeyID]
	if !known {
		return a.KeyID, authz.ReasonUnknownKey
	}
	now := s.opts.Now().UnixMilli()
	high := s.auth.nonces.clock(now)
	accept, retain := s.auth.nonces.window(p.MaxSkew.Milliseconds(), high)
	ts := int64(a.UnixMs)
	// Stale against the latest time seen, future against now: both the
	// stricter reading when the clock stepped back. Nothing stamped before
	// the cache was created (a restart) passes.
	if a.UnixMs > 1<<62 || high-ts > accept || ts-now > accept || ts < s.auth.nonces.floorOf() {
		return a.KeyID, authz.ReasonSkew
	}
	if !key.mac.Check(raw, off) {
		return a.KeyID, authz.ReasonBadMAC
	}
	switch s.auth.nonces.add(key.ns, a.Nonce, ts+retain, high, nonceLimits{p.MaxNonces, p.MaxNoncesPerKey}) {
	case nonceReplay:
		return a.KeyID, authz.ReasonReplay
	case nonceFull:
		return a.KeyID, authz.ReasonNonceCacheFull
	case nonceKeyFull:
		return a.KeyID, authz.ReasonNonceKeyQuota
	}
	return a.KeyID, ""
}
