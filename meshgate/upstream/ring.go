package upstream

import (
	"hash/fnv"
	"sort"
	"strconv"
)

// VirtualNodes is the number of ring points per endpoint.
const VirtualNodes = 160

// ring is a consistent-hash ring over endpoint indexes. It is built once
// for a fixed endpoint list; unhealthy endpoints are skipped at lookup, so
// ejecting an endpoint moves only the keys it owned, and they move back
// when it returns.
type ring struct {
	points []uint64 // sorted
	owner  []int    // owner[i] = endpoint index of points[i]
}

func newRing(addrs []string) *ring {
	type pt struct {
		h uint64
		e int
	}
	pts := make([]pt, 0, len(addrs)*VirtualNodes)
	for e, a := range addrs {
		for v := range VirtualNodes {
			h := fnv.New64a()
			h.Write([]byte(a))
			h.Write([]byte{'#'})
			h.Write(strconv.AppendInt(nil, int64(v), 10))
			pts = append(pts, pt{mix64(h.Sum64()), e})
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].h < pts[j].h })
	r := &ring{points: make([]uint64, len(pts)), owner: make([]int, len(pts))}
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

// lookup returns the first endpoint clockwise from key's hash for which ok
// returns true, or -1.
func (r *ring) lookup(key uint64, ok func(int) bool) int {
	if len(r.points) == 0 {
		return -1
	}
	h := mix64(key)
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i] >= h })
	for n := 0; n < len(r.points); n++ {
		e := r.owner[(i+n)%len(r.points)]
		if ok(e) {
			return e
		}
	}
	return -1
}
