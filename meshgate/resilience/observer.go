package resilience

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Stage says where a request was found past its deadline.
type Stage uint8

// Stages.
const (
	StageAdmission Stage = iota // on arrival
	StageQueue                  // while waiting for a slot
	StageRetry                  // before a retry or hedge
)

var stageNames = [...]string{"admission", "queue", "retry"}

func (s Stage) String() string { return stageNames[s] }

// RetryEvent is what happened when a retry or hedge was considered.
type RetryEvent uint8

// Retry events.
const (
	RetrySent            RetryEvent = iota // a retry was sent
	HedgeSent                              // a hedge was sent
	RetryBudgetExhausted                   // denied: budget spent
	RetryDeadline                          // denied: not enough deadline left
	RetryNoEndpoint                        // denied: no untried endpoint
)

var retryNames = [...]string{"retry", "hedge", "budget_exhausted", "deadline", "no_endpoint"}

func (r RetryEvent) String() string { return retryNames[r] }

// Observer receives an upstream's resilience events (metrics, logs). Its
// methods are called on the request path and must not block.
type Observer interface {
	Ejected(e *Endpoint, r EjectReason, d time.Duration)
	Returned(e *Endpoint)
	Rejected(r *Rejected)
	Expired(s Stage)
	Retry(ev RetryEvent)
	LimitChanged(limit int)
}

// Stats are an upstream's resilience counters since its Guard was built.
type Stats struct {
	Ejections       int64
	Ejected         int64 // endpoints ejected now
	Rejected        map[string]int64
	Expired         map[string]int64
	Retries         map[string]int64
	Limit           int
	RetriesInFlight int64
}

// counters is the Guard's own Observer: atomic counts, plus rate-limited
// logs, forwarding to an optional next Observer.
type counters struct {
	name      string
	log       *slog.Logger
	next      Observer
	ejections atomic.Int64
	ejected   atomic.Int64
	rejected  [8]atomic.Int64
	expired   [len(stageNames)]atomic.Int64
	retries   [len(retryNames)]atomic.Int64
	limit     atomic.Int64

	lastLog    atomic.Int64 // unix ns of the last ejection log
	suppressed atomic.Int64
}

// logEvery is the minimum gap between two ejection log lines per upstream.
const logEvery = time.Second

func (c *counters) Ejected(e *Endpoint, r EjectReason, d time.Duration) {
	c.ejections.Add(1)
	c.ejected.Add(1)
	if c.next != nil {
		c.next.Ejected(e, r, d)
	}
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(logEvery) || !c.lastLog.CompareAndSwap(last, now) {
		c.suppressed.Add(1)
		return
	}
	c.log.Info("endpoint ejected", "upstream", c.name, "endpoint", e.addr, "reason", r.String(),
		"for", d, "suppressed", c.suppressed.Swap(0))
}

func (c *counters) Returned(e *Endpoint) {
	c.ejected.Add(-1)
	if c.next != nil {
		c.next.Returned(e)
	}
	c.log.Debug("endpoint returned from ejection", "upstream", c.name, "endpoint", e.addr)
}

func (c *counters) Rejected(r *Rejected) {
	for i, x := range rejections {
		if x == r {
			c.rejected[i].Add(1)
		}
	}
	if c.next != nil {
		c.next.Rejected(r)
	}
}

func (c *counters) Expired(s Stage) {
	c.expired[s].Add(1)
	if c.next != nil {
		c.next.Expired(s)
	}
}

func (c *counters) Retry(ev RetryEvent) {
	c.retries[ev].Add(1)
	if c.next != nil {
		c.next.Retry(ev)
	}
}

func (c *counters) LimitChanged(limit int) {
	c.limit.Store(int64(limit))
	if c.next != nil {
		c.next.LimitChanged(limit)
	}
}

func (c *counters) stats() Stats {
	s := Stats{Ejections: c.ejections.Load(), Ejected: c.ejected.Load(), Limit: int(c.limit.Load()),
		Rejected: map[string]int64{}, Expired: map[string]int64{}, Retries: map[string]int64{}}
	for i, r := range rejections {
		s.Rejected[r.Reason] = c.rejected[i].Load()
	}
	for i, n := range stageNames {
		s.Expired[n] = c.expired[i].Load()
	}
	for i, n := range retryNames {
		s.Retries[n] = c.retries[i].Load()
	}
	return s
}
