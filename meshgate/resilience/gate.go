package resilience

import (
	"context"
	"sync"
	"time"
)

// gate admits requests to an upstream: at most capacity in flight (the
// circuit breaker's max_requests, lowered by the adaptive limit), the
// rest wait up to maxWait in two FIFO queues (core first), at most
// maxPending of them. Non-core requests leave a tenth of the capacity to
// core ones.
type gate struct {
	maxRequests int
	maxPending  int
	maxWait     time.Duration
	lim         *Limiter

	mu       sync.Mutex
	active   int
	pending  int
	core     waitq
	normal   waitq
	waitPool sync.Pool
}

type waiter struct {
	ch      chan struct{}
	granted bool
	core    bool
	next    *waiter
	prev    *waiter
}

type waitq struct{ head, tail *waiter }

func (q *waitq) push(w *waiter) {
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
}

func (q *waitq) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.next, w.prev = nil, nil
}

// capacity is how many may be in flight for a request of this priority;
// limited says whether the adaptive limit (not max_requests) set it.
func (g *gate) capacity(core bool) (c int, limited bool) {
	c = g.maxRequests
	if g.lim != nil {
		if l := g.lim.Limit(); l < c {
			c, limited = l, true
		}
	}
	if !core {
		c -= c / 10
	}
	return max(c, 1), limited
}

// admitLocked takes a slot for a request of this priority if one is free
// and no request it must not overtake is queued; g.mu is held. limited is
// capacity's.
func (g *gate) admitLocked(core bool) (ok, limited bool) {
	c, limited := g.capacity(core)
	ahead := g.core.head != nil || (!core && g.normal.head != nil)
	if g.active < c && !ahead {
		g.active++
		return true, limited
	}
	return false, limited
}

// refusal is the error of a request refused at once for want of a slot.
func refusal(limited bool) error {
	if limited {
		return ErrConcurrencyLimit
	}
	return ErrMaxRequests
}

// acquire admits one request or returns a *Rejected (or ErrDeadline when
// the wait ran into the request's deadline). until is the latest time
// the request may still be sent (zero: none).
func (g *gate) acquire(ctx context.Context, core bool, until time.Time) error {
	g.mu.Lock()
	ok, limited := g.admitLocked(core)
	if ok {
		g.mu.Unlock()
		return nil
	}
	if g.maxWait <= 0 {
		g.mu.Unlock()
		return refusal(limited)
	}
	if g.pending >= g.maxPending {
		g.mu.Unlock()
		return ErrMaxPending
	}
	w, _ := g.waitPool.Get().(*waiter)
	if w == nil {
		w = &waiter{ch: make(chan struct{}, 1)}
	}
	w.granted, w.core = false, core
	if core {
		g.core.push(w)
	} else {
		g.normal.push(w)
	}
	g.pending++
	g.mu.Unlock()

	wait, err := g.maxWait, error(ErrQueueTimeout)
	if !until.IsZero() {
		if d := time.Until(until); d < wait {
			wait, err = d, ErrDeadline
		}
	}
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-w.ch:
		g.waitPool.Put(w)
		return nil
	case <-t.C:
	case <-ctx.Done():
		err = ErrDeadline
	}
	g.mu.Lock()
	if w.granted { // granted while timing out: give the slot back
		g.mu.Unlock()
		<-w.ch
		g.release()
	} else {
		if w.core {
			g.core.remove(w)
		} else {
			g.normal.remove(w)
		}
		g.pending--
		g.mu.Unlock()
	}
	g.waitPool.Put(w)
	return err
}

// release ends one admitted request and admits waiters that now fit.
func (g *gate) release() {
	g.mu.Lock()
	g.active--
	for {
		q := &g.core
		if q.head == nil {
			q = &g.normal
		}
		w := q.head
		if w == nil {
			break
		}
		if c, _ := g.capacity(w.core); g.active >= c {
			break
		}
		q.remove(w)
		g.pending--
		g.active++
		w.granted = true
		w.ch <- struct{}{}
	}
	g.mu.Unlock()
}

// inFlight is the number of admitted requests.
func (g *gate) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active
}
