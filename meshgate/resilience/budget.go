package resilience

import "sync/atomic"

// Budget is a retry budget (Envoy's retry_budget): retries and hedges in
// flight may be at most max(minimum, percent% of the requests in flight).
type Budget struct {
	percent, minimum int64
	active           atomic.Int64 // retries + hedges in flight
}

// NewBudget returns a budget of percent % of live requests, at least minimum.
func NewBudget(percent, minimum int) *Budget {
	return &Budget{percent: int64(percent), minimum: int64(minimum)}
}

// TryAcquire takes one retry slot given live requests in flight; false
// when the budget is spent. A true must be paired with Release.
func (b *Budget) TryAcquire(live int64) bool {
	allowed := max(b.minimum, live*b.percent/100)
	for {
		c := b.active.Load()
		if c >= allowed {
			return false
		}
		if b.active.CompareAndSwap(c, c+1) {
			return true
		}
	}
}

// Release returns a slot.
func (b *Budget) Release() { b.active.Add(-1) }

// Active is the number of retries and hedges in flight.
func (b *Budget) Active() int64 { return b.active.Load() }
