// Package connio holds what MeshGate's listeners share for serving
// connections with few goroutine hand-offs: request workers (Workers) and
// the buffer-less readiness check of an idle socket (Peeker). The private
// listener (meshgate/inbound) and the direct gRPC server transport
// (meshgate/grpcserve) use both. Drain is the graceful shutdown with a
// hard stop at a deadline that listeners and servers share. Batch is a
// connection reader's write batch: the frames it produces for other
// connections are written once per read instead of once each. Parker
// holds connections idle past their grace without a goroutine each (one
// epoll set per listener or server, Linux; park_linux.go).
package connio

import (
	"runtime"
	"sync"
)

// Workers runs requests on a small set of long-lived goroutines instead of
// a new goroutine each: a worker's stack has already grown to what a
// bridged call needs (grpc-go's call path is deep), so a request costs
// neither a goroutine start nor the stack copies of growing a fresh 8 KB
// stack. A request is handed to a worker parked waiting for work; when
// none is parked and fewer than 4 × GOMAXPROCS exist one is started, and
// past that the request gets its own goroutine, so concurrency is never
// limited by the pool. Workers live until Close.
type Workers[T any] struct {
	run  func(T)
	ch   chan T // unbuffered: a send succeeds only to a parked worker
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup // workers and requests on goroutines of their own

	mu  sync.Mutex
	n   int
	max int
}

// Init makes w run each dispatched value with run.
func (w *Workers[T]) Init(run func(T)) {
	w.run = run
	w.ch = make(chan T)
	w.stop = make(chan struct{})
	w.max = 4 * runtime.GOMAXPROCS(0)
}

// Dispatch runs v on a worker, or on a goroutine of its own.
func (w *Workers[T]) Dispatch(v T) {
	select {
	case w.ch <- v:
		return
	default:
	}
	w.mu.Lock()
	start := w.n < w.max
	if start {
		w.n++
	}
	w.mu.Unlock()
	w.wg.Add(1)
	if start {
		go w.work(v)
		return
	}
	go func() {
		defer w.wg.Done()
		w.run(v)
	}()
}

func (w *Workers[T]) work(v T) {
	defer w.wg.Done()
	for {
		w.run(v)
		select {
		case v = <-w.ch:
		case <-w.stop:
			return
		}
	}
}

// Close stops the parked workers and waits for them and for every request
// still running; called once nothing can be dispatched any more.
func (w *Workers[T]) Close() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// Started is how many workers have been started (for tests and stats).
func (w *Workers[T]) Started() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}
