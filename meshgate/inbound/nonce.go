package inbound

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// nonceCache remembers every accepted (key, nonce) until the timestamp of
// its frame leaves the acceptance window, so a captured frame can never be
// replayed: while its timestamp would still pass the skew check, its nonce
// is still here. Nothing is ever evicted early. When the bound on entries
// is reached, new nonces are refused (the caller fails closed); a second,
// per key bound keeps one key holder from taking all of it.
//
// A key is named by its namespace (AuthPolicy: a fingerprint of key id and
// secret), so listeners sharing one cache share nonces exactly when they
// share a key, and a key id whose secret changes starts afresh.
//
// Entries live in 64 shards, each with its own lock, a map of nonce →
// expiry and time buckets of the nonces that expire in each 500 ms, so
// expiry is by timestamp and costs nothing per lookup: a shard drops whole
// buckets once their end has passed, when it is next used.
type nonceCache struct {
	seed   uint64
	n      atomic.Int64                             // entries across shards
	high   atomic.Int64                             // latest time seen, unix ms (see clock)
	floor  int64                                    // creation time, unix ms (see newNonceCache)
	keys   atomic.Pointer[map[uint64]*atomic.Int64] // entries per key, copy on write
	keysMu sync.Mutex                               // serialises adding a key
	win    atomic.Pointer[nonceWindow]
	shards [nonceShards]nonceShard
}

const (
	nonceShards = 64
	bucketMs    = 500
	maxFree     = 8 // recycled bucket slices kept per shard
)

type nonceKey struct {
	id    uint64 // key namespace
	nonce uint64
}

type nonceShard struct {
	mu      sync.Mutex
	seen    map[nonceKey]int64   // expiry, unix ms
	buckets map[int64][]nonceKey // expiry/bucketMs -> nonces
	free    [][]nonceKey
	swept   int64    // buckets below this one are gone
	_       [64]byte // keep shards' locks on separate cache lines
}

// nonceResult is the outcome of nonceCache.add.
type nonceResult uint8

const (
	nonceOK nonceResult = iota
	nonceReplay
	nonceFull    // the listener's bound
	nonceKeyFull // the key's bound
)

// nonceLimits bound the entries of the whole cache and of one key.
type nonceLimits struct{ total, perKey int }

// nonceWindow is how long nonces are kept after their timestamp (retain,
// the largest max_skew the listener has used) and, after max_skew was
// raised by a reload, the narrower window frames are accepted with until
// every nonce remembered under the old one has timed out.
type nonceWindow struct {
	retain int64 // ms
	prev   int64 // ms, accept window while now < until
	until  int64 // unix ms
}

// newNonceCache returns an empty cache created at now (unix ms). Frames
// stamped before now are refused: a process that ran before this one (a
// restart) may have accepted them, and their nonces are not here. Clients
// whose clocks run behind by d are refused for d after the start.
func newNonceCache(now int64) *nonceCache {
	return &nonceCache{seed: rand.Uint64(), floor: now}
}

// window returns the skew to accept frames with (ms) and how long after
// its timestamp a nonce is kept (ms), for a policy skew of skew ms at now.
func (c *nonceCache) window(skew, now int64) (accept, retain int64) {
	for {
		w := c.win.Load()
		switch {
		case w == nil:
			// First use: nothing remembered yet, no narrower window.
			c.win.CompareAndSwap(nil, &nonceWindow{retain: skew})
			continue
		case skew > w.retain:
			// Raised: nonces accepted so far are kept only retain after
			// their timestamp, so keep accepting with the old window
			// until they can no longer pass the new one.
			prev := w.retain
			if now < w.until {
				prev = min(prev, w.prev)
			}
			c.win.CompareAndSwap(w, &nonceWindow{retain: skew, prev: prev, until: now + w.retain + skew})
			continue
		}
		accept = skew
		if now < w.until {
			accept = min(accept, w.prev)
		}
		return accept, w.retain
	}
}

// clock returns the latest of now and every earlier now: the time the
// cache has already expired nonces up to. If the wall clock steps back,
// frames are judged stale against this time, so a nonce dropped before the
// step cannot be replayed after it (frames older than the high-water mark
// minus max_skew fail until the clock catches up).
func (c *nonceCache) clock(now int64) int64 {
	for {
		h := c.high.Load()
		if now <= h {
			return h
		}
		if c.high.CompareAndSwap(h, now) {
			return now
		}
	}
}

// floorOf is the earliest timestamp accepted (see newNonceCache).
func (c *nonceCache) floorOf() int64 { return c.floor }

func (c *nonceCache) shard(k nonceKey) *nonceShard {
	h := (k.nonce ^ c.seed ^ k.id*0xff51afd7ed558ccd) * 0x9e3779b97f4a7c15
	return &c.shards[h>>58]
}

// add records (id, nonce) until exp (unix ms); now comes from clock. It
// returns nonceReplay when the pair is already remembered, nonceFull or
// nonceKeyFull when a bound is reached (after dropping every expired
// entry).
func (c *nonceCache) add(id, nonce uint64, exp, now int64, lim nonceLimits) nonceResult {
	k := nonceKey{id, nonce}
	sh := c.shard(k)
	perKey := c.keyCount(id)
	for try := 0; ; try++ {
		sh.mu.Lock()
		sh.sweep(c, now)
		if e, ok := sh.seen[k]; ok {
			if e >= now {
				sh.mu.Unlock()
				return nonceReplay
			}
			// Expired but not swept yet: take the entry over (its old
			// bucket skips it, the expiry no longer matches).
			sh.insert(k, exp)
			sh.mu.Unlock()
			return nonceOK
		}
		res := nonceFull
		if perKey.Add(1) <= int64(lim.perKey) {
			if c.n.Add(1) <= int64(lim.total) {
				sh.insert(k, exp)
				sh.mu.Unlock()
				return nonceOK
			}
			c.n.Add(-1)
		} else {
			res = nonceKeyFull
		}
		perKey.Add(-1)
		sh.mu.Unlock()
		if try > 0 {
			return res
		}
		// Other shards may hold expired entries they have not dropped yet.
		c.sweepAll(now)
	}
}

// keyCount returns the entry counter of key id, adding it on first use.
func (c *nonceCache) keyCount(id uint64) *atomic.Int64 {
	if m := c.keys.Load(); m != nil {
		if n := (*m)[id]; n != nil {
			return n
		}
	}
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	old := c.keys.Load()
	if old != nil {
		if n := (*old)[id]; n != nil {
			return n
		}
	}
	m := make(map[uint64]*atomic.Int64, len(*orEmpty(old))+1)
	for k, v := range *orEmpty(old) {
		m[k] = v
	}
	n := new(atomic.Int64)
	m[id] = n
	c.keys.Store(&m)
	return n
}

// len is the number of remembered nonces.
func (c *nonceCache) len() int { return int(c.n.Load()) }

func (c *nonceCache) sweepAll(now int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.sweep(c, now)
		sh.mu.Unlock()
	}
}

func orEmpty(m *map[uint64]*atomic.Int64) *map[uint64]*atomic.Int64 {
	if m == nil {
		return &map[uint64]*atomic.Int64{}
	}
	return m
}

func (sh *nonceShard) insert(k nonceKey, exp int64) {
	if sh.seen == nil {
		sh.seen = map[nonceKey]int64{}
		sh.buckets = map[int64][]nonceKey{}
	}
	sh.seen[k] = exp
	b := exp / bucketMs
	keys, ok := sh.buckets[b]
	if !ok && len(sh.free) > 0 {
		keys = sh.free[len(sh.free)-1]
		sh.free = sh.free[:len(sh.free)-1]
	}
	sh.buckets[b] = append(keys, k)
}

// sweep drops the buckets whose every nonce expired before now.
func (sh *nonceShard) sweep(c *nonceCache, now int64) {
	cur := now / bucketMs
	if cur <= sh.swept {
		return
	}
	sh.swept = cur
	for b, keys := range sh.buckets {
		if b >= cur {
			continue
		}
		end := (b + 1) * bucketMs
		removed := 0
		for _, k := range keys {
			if e, ok := sh.seen[k]; ok && e < end {
				delete(sh.seen, k)
				c.keyCount(k.id).Add(-1)
				removed++
			}
		}
		c.n.Add(int64(-removed))
		delete(sh.buckets, b)
		if len(sh.free) < maxFree {
			sh.free = append(sh.free, keys[:0])
		}
	}
}
