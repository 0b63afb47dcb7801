// Package retire is the reference counting both upstream pool kinds share
// (the retire policy of meshgate/upstream's Upstream): a call brackets
// itself with Acquire and Release; Retire marks the pool as no longer
// routed to, and the pool closes after its last call in flight.
package retire

import "sync/atomic"

// Refs counts one pool's calls in flight. Init sets what closes the pool
// before any other method is called. Close functions may run more than
// once (concurrent Retire and last Release), so they must be idempotent.
type Refs struct {
	n       atomic.Int64
	retired atomic.Bool
	close   func()
}

// Init sets close, what closes the pool.
func (r *Refs) Init(close func()) { r.close = close }

// Acquire takes a reference for one call. It returns false once the pool
// is retired or closed: the caller re-reads its routing table.
func (r *Refs) Acquire() bool {
	r.n.Add(1)
	if r.retired.Load() {
		r.Release()
		return false
	}
	return true
}

// Release drops a reference taken by Acquire; the last one of a retired
// pool closes it.
func (r *Refs) Release() {
	if r.n.Add(-1) == 0 && r.retired.Load() {
		r.close()
	}
}

// Retire marks the pool as retired and closes it at once when no call is
// in flight (else the last Release does).
func (r *Refs) Retire() {
	r.retired.Store(true)
	if r.n.Load() == 0 {
		r.close()
	}
}

// Closing marks the pool as retired without closing it: the pool is
// closing itself, and Acquire fails from now on.
func (r *Refs) Closing() { r.retired.Store(true) }
