package inbound

import (
	"runtime"
	"sync"
)

// Requests run on a small set of long-lived worker goroutines per Server
// instead of a new goroutine each: a worker's stack has already grown to
// what a bridged call needs (grpc-go's call path is deep), so a request
// costs neither a goroutine start nor the stack copies of growing a fresh
// 8 KB stack. A request is handed to a worker parked waiting for work;
// when none is parked and fewer than maxWorkers exist one is started, and
// past that the request gets its own goroutine as before, so concurrency
// is never limited by the pool. Workers live until the Server closes.
type workers struct {
	ch   chan *request // unbuffered: a send succeeds only to a parked worker
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu  sync.Mutex
	n   int
	max int
}

func (w *workers) init() {
	w.ch = make(chan *request)
	w.stop = make(chan struct{})
	w.max = 4 * runtime.GOMAXPROCS(0)
}

// dispatch runs q on a worker, or on a goroutine of its own.
func (w *workers) dispatch(q *request) {
	select {
	case w.ch <- q:
		return
	default:
	}
	w.mu.Lock()
	start := w.n < w.max
	if start {
		w.n++
		w.wg.Add(1)
	}
	w.mu.Unlock()
	if start {
		go w.work(q)
		return
	}
	go q.run()
}

func (w *workers) work(q *request) {
	defer w.wg.Done()
	for {
		q.run()
		select {
		case q = <-w.ch:
		case <-w.stop:
			return
		}
	}
}

// close stops the parked workers and waits for them; called once no
// request can be dispatched any more (every connection has ended).
func (w *workers) close() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}
