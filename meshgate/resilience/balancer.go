package resilience

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Tried is the set of endpoint indexes already attempted by one request
// (indexes ≥ 64 are never marked, so they may be retried).
type Tried uint64

// Has reports whether index i is in the set.
func (t Tried) Has(i int) bool { return i < 64 && t&(1<<uint(i)) != 0 }

// With returns the set plus index i.
func (t Tried) With(i int) Tried {
	if i < 64 {
		t |= 1 << uint(i)
	}
	return t
}

// Balancer picks an available endpoint not in tried, or nil. key is the
// request's hash key (uin), used by consistent hashing only.
type Balancer interface {
	Pick(key uint64, tried Tried) *Endpoint
}

// Balancer names (config.LB*).
const (
	LBRoundRobin     = "round_robin"
	LBLeastRequest   = "least_request"
	LBConsistentHash = "consistent_hash"
)

func newBalancer(lb string, s *set) Balancer {
	switch lb {
	case LBLeastRequest:
		return &p2c{s: s}
	case LBConsistentHash:
		return newRing(s)
	default:
		return &wrr{s: s, cur: make([]float64, len(s.eps)), w: make([]float64, len(s.eps))}
	}
}

// eligible reports whether e may be picked for this request.
func eligible(e *Endpoint, now time.Duration, tried Tried) bool {
	return !tried.Has(e.index) && e.available(now)
}

// bestLatency is the lowest latency EWMA among eligible endpoints (an
// endpoint without samples is assumed as fast as the best), or 1.
func (s *set) bestLatency(now time.Duration, tried Tried) float64 {
	best := math.Inf(1)
	for _, e := range s.eps {
		if l := math.Float64frombits(e.latBits.Load()); l > 0 && l < best && eligible(e, now, tried) {
			best = l
		}
	}
	if math.IsInf(best, 1) {
		return 1
	}
	return best
}

// latency is e's latency estimate: its EWMA decaying towards 0 while it
// gets no samples (as linkerd's peak-EWMA does), so an endpoint that
// stopped being picked because it was slow is tried again after a few
// decay times and its recovery is seen. It is never below floor; an
// endpoint without samples gets floor (it is tried first).
func (s *set) latency(e *Endpoint, now time.Duration, ref, floor float64) float64 {
	l := math.Float64frombits(e.latBits.Load())
	if l <= 0 {
		return floor
	}
	if idle := float64(int64(now) - e.lastSample.Load()); idle > 0 {
		l *= math.Exp(-idle / s.decay)
	}
	return max(l, floor)
}

// An endpoint up to latencyTolerance × the best latency + latencySlack
// keeps its full weight (scheduling noise at sub-millisecond latencies
// must not move weights).
const (
	latencyTolerance = 1.2
	latencySlack     = float64(500 * time.Microsecond)
)

// weight is e's effective weight: quality × min(1, (1.2 × ref + 0.5ms) / latency)³.
// Cubed so that a 10× slower endpoint falls to the min_weight_percent
// floor (~0.5 % of the traffic out of three endpoints) and out of the
// route's p99; linear leaves it ~5 %, squared ~1.5 % (measured).
func (s *set) weight(e *Endpoint, now time.Duration, ref float64) float64 {
	if !s.weights {
		return e.base
	}
	// Within latencyTolerance of the best counts as the best: sampling
	// noise between equal endpoints does not move weights.
	// The raw EWMA (no idle decay): the weight floor already keeps a slow
	// endpoint sampled, and decaying between its rare samples would
	// inflate its share.
	l := math.Float64frombits(e.latBits.Load())
	if l <= 0 {
		l = ref
	}
	r := min(1, (latencyTolerance*ref+latencySlack)/l)
	// Never exactly 0: when every endpoint fails, all still share the load.
	return max(e.quality(now)*r*r*r, 1e-9)
}

// Weights returns every endpoint's current effective weight (0 when not
// available), normalised so the best is 1 — for tests, /metrics and the
// admin API.
func (s *set) Weights(dst []float64) []float64 {
	now := s.clock()
	ref := s.bestLatency(now, 0)
	dst = dst[:0]
	top := 0.0
	for _, e := range s.eps {
		w := 0.0
		if e.available(now) {
			w = s.weight(e, now, ref)
		}
		dst = append(dst, w)
		top = max(top, w)
	}
	for i, w := range dst {
		if w > 0 {
			dst[i] = max(w/top, s.minShare)
		}
	}
	return dst
}

// wrr is smooth weighted round robin (nginx) over effective weights.
type wrr struct {
	s   *set
	mu  sync.Mutex
	cur []float64 // smooth WRR state
	w   []float64 // scratch: this pick's weights (-1 = not eligible)
}

func (b *wrr) Pick(_ uint64, tried Tried) *Endpoint {
	s := b.s
	now := s.clock()
	ref := s.bestLatency(now, tried)
	b.mu.Lock()
	defer b.mu.Unlock()
	top := 0.0
	for i, e := range s.eps {
		w := -1.0 // not eligible
		if eligible(e, now, tried) {
			w = s.weight(e, now, ref)
			top = max(top, w)
		}
		b.w[i] = w
	}
	if top == 0 {
		return nil
	}
	floor := top * s.minShare
	total := 0.0
	pick := -1
	for i, w := range b.w {
		if w < 0 {
			continue
		}
		w = max(w, floor)
		total += w
		b.cur[i] += w
		if pick < 0 || b.cur[i] > b.cur[pick] {
			pick = i
		}
	}
	b.cur[pick] -= total
	return s.eps[pick]
}

// p2c is power of two choices: of two random eligible endpoints, the one
// with the lower latency × (in flight + 1) / quality.
type p2c struct{ s *set }

func (b *p2c) Pick(_ uint64, tried Tried) *Endpoint {
	s := b.s
	n := len(s.eps)
	now := s.clock()
	a := b.sample(now, tried, rand.IntN(n), -1)
	if a == nil {
		return nil
	}
	c := b.sample(now, tried, rand.IntN(n), a.index)
	if c == nil {
		return a
	}
	ref := s.bestLatency(now, tried)
	if b.cost(c, now, ref) < b.cost(a, now, ref) {
		return c
	}
	return a
}

// sample returns the first eligible endpoint from start other than skip.
func (b *p2c) sample(now time.Duration, tried Tried, start, skip int) *Endpoint {
	n := len(b.s.eps)
	for k := range n {
		e := b.s.eps[(start+k)%n]
		if e.index != skip && eligible(e, now, tried) {
			return e
		}
	}
	return nil
}

func (b *p2c) cost(e *Endpoint, now time.Duration, ref float64) float64 {
	s := b.s
	w, l := e.base, ref
	if s.weights {
		// Latencies within latencyTolerance of the best are equal: ties
		// go by load (then at random), as plain least request.
		w, l = max(e.quality(now), s.minShare*e.base), s.latency(e, now, ref, latencyTolerance*ref+latencySlack)
	}
	return l * float64(e.inflight.Load()+1) / w
}

// VirtualNodes is the number of ring points per endpoint.
const VirtualNodes = 160

// ring is a consistent-hash ring (the SET model): a user stays on one
// endpoint; while it is ejected its users go to the next point clockwise
// and come back when it returns; nobody else moves. Weights do not apply.
type ring struct {
	s      *set
	points []uint64
	owner  []int
}

func newRing(s *set) *ring {
	type pt struct {
		h uint64
		e int
	}
	pts := make([]pt, 0, len(s.eps)*VirtualNodes)
	for _, e := range s.eps {
		for v := range VirtualNodes {
			h := fnv.New64a()
			h.Write([]byte(e.addr))
			h.Write([]byte{'#'})
			h.Write(strconv.AppendInt(nil, int64(v), 10))
			pts = append(pts, pt{mix64(h.Sum64()), e.index})
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].h < pts[j].h })
	r := &ring{s: s, points: make([]uint64, len(pts)), owner: make([]int, len(pts))}
	for i, p := range pts {
		r.points[i], r.owner[i] = p.h, p.e
	}
	return r
}

// mix64 is the splitmix64 finalizer: spreads sequential uins over the ring.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (r *ring) Pick(key uint64, tried Tried) *Endpoint {
	if len(r.points) == 0 {
		return nil
	}
	now := r.s.clock()
	h := mix64(key)
	lo, hi := 0, len(r.points) // first point >= h (sort.Search without a closure)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.points[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i := lo
	for n := 0; n < len(r.points); n++ {
		e := r.s.eps[r.owner[(i+n)%len(r.points)]]
		if eligible(e, now, tried) {
			return e
		}
	}
	return nil
}
