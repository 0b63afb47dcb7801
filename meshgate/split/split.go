// Package split decides, per request, which backend (upstream) of a route
// serves it, so that a service can move from its legacy backend to a new one
// user by user (routes[].split in the config; docs/migration.md).
//
// A Rule is compiled once per config generation from config.Split and is
// immutable; Pick is allocation-free and O(1) in the number of users (at
// most 8 backends are scanned; the allow-list and uin ranges are binary
// searched). Evaluation order:
//
//  1. operator override (package override): every request to the pinned
//     backend;
//  2. allow-list: a listed uin goes to allow.upstream;
//  3. callers: the caller (ext 4 / x-mgp-caller) picks the backend;
//  4. by uin_bucket: Bucket(uin) < the backend's cumulative share; by
//     uin_range: the backend whose range holds uin; by weight: weights;
//  5. a request without a uin (uin 0) goes by weight.
//
// # The user bucket
//
// Bucket(uin) = Mix64(uin) mod 10000, where Mix64 is the splitmix64
// finalizer (Steele, Lea, Flood 2014):
//
//	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
//	z = (z ^ z>>27) * 0x94d049bb133111eb
//	z =  z ^ z>>31
//
// It is fixed: the same uin lands in the same bucket in every process and
// every MeshGate version, so a user stays on one side of a split across
// restarts and replicas. Buckets are handed out from 0 in backend order:
// with backends [legacy, new] at p %, bucket b goes to new iff b < p×100,
// so widening p only moves users from legacy to new, never back.
package split

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/override"
)

// Buckets is the number of user buckets (one bucket = 0.01 %).
const Buckets = 10000

// ErrInvalid wraps errors building a Rule.
var ErrInvalid = errors.New("split: invalid")

// Mix64 is the splitmix64 finalizer: a fixed, well-mixing bijection on
// uint64. Never change it: it decides which users are on which side.
func Mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Bucket returns uin's user bucket in [0, 10000).
func Bucket(uin uint64) uint32 { return uint32(Mix64(uin) % Buckets) }

// Reason says which rule picked a backend.
type Reason uint8

// Reasons, in evaluation order.
const (
	ReasonDefault  Reason = iota // nothing matched: backends[0]
	ReasonOverride               // operator override
	ReasonAllow                  // allow-list
	ReasonCaller                 // caller rule
	ReasonRange                  // uin range
	ReasonBucket                 // user bucket
	ReasonWeight                 // weight (no uin, or by: weight)
)

var reasonNames = [...]string{"default", "override", "allow", "caller", "range", "bucket", "weight"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Backend is one side of a compiled split.
type Backend struct {
	Upstream string
	Method   string // gRPC method on this backend; "" = the route's
	Cmd      uint32 // private cmd on this backend; 0 = the route's
	// BucketLo, BucketHi: this backend's buckets [lo, hi) (by uin_bucket;
	// backends[0] has the rest).
	BucketLo, BucketHi uint32
	Weight             uint64
}

type uinRange struct {
	min, max uint64
	backend  int
}

// Rule is one route's compiled split; immutable and safe for concurrent use.
type Rule struct {
	route    string
	by       string
	backends []Backend
	cum      []uint32 // cum[k]: end of backend k's buckets (k ≥ 1); cum[0] unused
	wcum     []uint64 // cumulative weights
	wtotal   uint64
	ranges   []uinRange // sorted by min, disjoint
	allow    []uint64   // sorted
	allowTo  int
	callers  map[string]int
	pin      *override.Pin
}

// New compiles route's split. pin may be nil (no overrides).
func New(route string, s *config.Split, pin *override.Pin) (*Rule, error) {
	if s == nil || len(s.Backends) == 0 {
		return nil, fmt.Errorf("%w: route %s: no backends", ErrInvalid, route)
	}
	if len(s.Backends) > config.MaxSplitBackends {
		return nil, fmt.Errorf("%w: route %s: more than %d backends", ErrInvalid, route, config.MaxSplitBackends)
	}
	by := s.By
	if by == "" {
		by = config.SplitByUINBucket
	}
	r := &Rule{route: route, by: by, pin: pin, callers: map[string]int{}}
	index := map[string]int{}
	r.backends = make([]Backend, len(s.Backends))
	r.cum = make([]uint32, len(s.Backends))
	var next uint32
	weighted := false
	for k, b := range s.Backends {
		if _, dup := index[b.Upstream]; dup || b.Upstream == "" {
			return nil, fmt.Errorf("%w: route %s: backends[%d]: empty or duplicate upstream %q", ErrInvalid, route, k, b.Upstream)
		}
		index[b.Upstream] = k
		r.backends[k] = Backend{Upstream: b.Upstream, Method: b.Method, Cmd: b.Cmd, Weight: uint64(b.Weight)}
		weighted = weighted || b.Weight > 0
		if k == 0 || by != config.SplitByUINBucket {
			continue
		}
		n := config.PercentBuckets(b.Percent)
		if next+n > Buckets {
			return nil, fmt.Errorf("%w: route %s: percents sum past 100", ErrInvalid, route)
		}
		r.backends[k].BucketLo, r.backends[k].BucketHi = next, next+n
		next += n
		r.cum[k] = next
	}
	if by == config.SplitByUINBucket {
		r.backends[0].BucketLo, r.backends[0].BucketHi = next, Buckets
	}
	if !weighted {
		switch by {
		case config.SplitByUINBucket:
			for k := range r.backends {
				r.backends[k].Weight = uint64(r.backends[k].BucketHi - r.backends[k].BucketLo)
			}
		case config.SplitByUINRange:
			r.backends[0].Weight = 1
		}
	}
	r.wcum = make([]uint64, len(r.backends))
	for k, b := range r.backends {
		r.wtotal += b.Weight
		r.wcum[k] = r.wtotal
	}
	if by == config.SplitByWeight && r.wtotal == 0 {
		return nil, fmt.Errorf("%w: route %s: by weight needs a weight", ErrInvalid, route)
	}
	for k, b := range s.Backends {
		for _, ur := range b.UINRanges {
			r.ranges = append(r.ranges, uinRange{ur.Min, ur.Max, k})
		}
	}
	slices.SortFunc(r.ranges, func(a, b uinRange) int { return cmp.Compare(a.min, b.min) })
	for i := 1; i < len(r.ranges); i++ {
		if r.ranges[i].min <= r.ranges[i-1].max {
			return nil, fmt.Errorf("%w: route %s: uin ranges overlap", ErrInvalid, route)
		}
	}
	if a := s.Allow; a != nil {
		to := a.Upstream
		if to == "" {
			to = s.Backends[len(s.Backends)-1].Upstream
		}
		k, ok := index[to]
		if !ok {
			return nil, fmt.Errorf("%w: route %s: allow.upstream %q is not a backend", ErrInvalid, route, to)
		}
		r.allow, r.allowTo = a.AllUINs(), k
	}
	for _, c := range s.Callers {
		k, ok := index[c.Upstream]
		if !ok {
			return nil, fmt.Errorf("%w: route %s: caller %q: upstream %q is not a backend", ErrInvalid, route, c.Caller, c.Upstream)
		}
		r.callers[c.Caller] = k
	}
	return r, nil
}

// Route is the route id the rule belongs to.
func (r *Rule) Route() string { return r.route }

// By is the split mode.
func (r *Rule) By() string { return r.by }

// Backends are the sides, backends[0] the base side.
func (r *Rule) Backends() []Backend { return r.backends }

// Index returns the position of the backend named upstream, or -1.
func (r *Rule) Index(upstream string) int {
	for k := range r.backends {
		if r.backends[k].Upstream == upstream {
			return k
		}
	}
	return -1
}

// Pinned returns the overriding backend's index, or -1 when the route is not
// overridden (or the override names a backend this rule does not have).
func (r *Rule) Pinned() int {
	if b, ok := r.pin.Backend(); ok {
		return r.Index(b)
	}
	return -1
}

// Pick returns the index of the backend that serves a request for uin (0 =
// none) from caller ("" = unknown), and why. Allocation-free.
func (r *Rule) Pick(uin uint64, caller string) (int, Reason) {
	if k, why, done := r.pickFirst(uin); done {
		return k, why
	}
	if caller != "" && len(r.callers) > 0 {
		if k, ok := r.callers[caller]; ok {
			return k, ReasonCaller
		}
	}
	return r.pickRest(uin)
}

// PickBytes is Pick with the caller as bytes (an MGP ext 4 value), without
// copying it.
func (r *Rule) PickBytes(uin uint64, caller []byte) (int, Reason) {
	if k, why, done := r.pickFirst(uin); done {
		return k, why
	}
	if len(caller) > 0 && len(r.callers) > 0 {
		if k, ok := r.callers[string(caller)]; ok { // no allocation: map index by converted bytes
			return k, ReasonCaller
		}
	}
	return r.pickRest(uin)
}

func (r *Rule) pickFirst(uin uint64) (int, Reason, bool) {
	if k := r.Pinned(); k >= 0 {
		return k, ReasonOverride, true
	}
	if uin != 0 && len(r.allow) > 0 {
		if _, ok := slices.BinarySearch(r.allow, uin); ok {
			return r.allowTo, ReasonAllow, true
		}
	}
	return 0, 0, false
}

func (r *Rule) pickRest(uin uint64) (int, Reason) {
	if uin != 0 {
		switch r.by {
		case config.SplitByUINBucket:
			b := Bucket(uin)
			for k := 1; k < len(r.cum); k++ {
				if b < r.cum[k] {
					return k, ReasonBucket
				}
			}
			return 0, ReasonBucket
		case config.SplitByUINRange:
			if k, ok := r.inRange(uin); ok {
				return k, ReasonRange
			}
			return 0, ReasonDefault
		}
	}
	return r.byWeight()
}

func (r *Rule) inRange(uin uint64) (int, bool) {
	lo, hi := 0, len(r.ranges)
	for lo < hi { // first range with min > uin
		m := int(uint(lo+hi) >> 1)
		if r.ranges[m].min <= uin {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0, false
	}
	g := &r.ranges[lo-1]
	if uin <= g.max {
		return g.backend, true
	}
	return 0, false
}

func (r *Rule) byWeight() (int, Reason) {
	if r.wtotal == 0 {
		return 0, ReasonDefault
	}
	x := rand.Uint64N(r.wtotal)
	for k, c := range r.wcum {
		if x < c {
			return k, ReasonWeight
		}
	}
	return 0, ReasonWeight
}

// Share returns the fraction of user buckets (by uin_bucket) or of the
// weight (otherwise) each backend gets, ignoring overrides, allow-lists and
// callers. Used for display (/migrate/status) and the share gauge.
func (r *Rule) Share() []float64 {
	out := make([]float64, len(r.backends))
	for k, b := range r.backends {
		switch {
		case r.by == config.SplitByUINBucket:
			out[k] = float64(b.BucketHi-b.BucketLo) / Buckets
		case r.wtotal > 0 && r.by == config.SplitByWeight:
			out[k] = float64(b.Weight) / float64(r.wtotal)
		default:
			out[k] = -1 // by uin_range: not a fraction of users
		}
	}
	return out
}
