package resilience

import (
	"sync/atomic"

	"github.com/meshgate/meshgate/meshgate/config"
)

// Admission is a listener-wide cap on requests in flight with a share
// reserved for core routes and heartbeats (priority admission: non-core
// traffic is shed first). A nil *Admission admits everything.
type Admission struct {
	max, normal int64
	n           atomic.Int64
	shed        atomic.Int64
}

// NewAdmission returns the cap of listeners[i].overload (after defaults),
// or nil when there is none.
func NewAdmission(o *config.Overload) *Admission {
	if o == nil || o.MaxInFlight <= 0 {
		return nil
	}
	m := int64(o.MaxInFlight)
	return &Admission{max: m, normal: max(1, m-m*int64(o.CoreReservePercent)/100)}
}

// Acquire admits one request (core: heartbeat or core route). A true must
// be paired with Release; false means answer result 6 (ErrOverload).
func (a *Admission) Acquire(core bool) bool {
	if a == nil {
		return true
	}
	limit := a.normal
	if core {
		limit = a.max
	}
	if a.n.Add(1) > limit {
		a.n.Add(-1)
		a.shed.Add(1)
		return false
	}
	return true
}

// Release ends one admitted request.
func (a *Admission) Release() {
	if a != nil {
		a.n.Add(-1)
	}
}

// Shed is the number of requests refused so far.
func (a *Admission) Shed() int64 {
	if a == nil {
		return 0
	}
	return a.shed.Load()
}
