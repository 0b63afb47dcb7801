package testkit

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load runs workers goroutines, each calling call in a loop until stop is
// closed. The returned wait function waits for them and reports the calls
// that succeeded and failed, with the first few errors.
func Load(workers int, stop <-chan struct{}, call func() error) (wait func() (ok, failed int64, errs []error)) {
	var okN, failN atomic.Int64
	var mu sync.Mutex
	var first []error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := call(); err != nil {
					failN.Add(1)
					mu.Lock()
					if len(first) < 5 {
						first = append(first, err)
					}
					mu.Unlock()
					continue
				}
				okN.Add(1)
			}
		}()
	}
	return func() (int64, int64, []error) {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return okN.Load(), failN.Load(), first
	}
}

// NoFailures waits for a Load (wait) and fails the test unless some calls
// succeeded and none failed; it returns the successes.
func NoFailures(tb testing.TB, wait func() (int64, int64, []error)) int64 {
	tb.Helper()
	ok, failed, errs := wait()
	if failed != 0 || ok == 0 {
		tb.Fatalf("ok=%d failed=%d first errors: %v", ok, failed, errs)
	}
	return ok
}

// Returns waits up to d for what's result on done: the test fails when
// none arrives ("what did not return") or when it is an error.
func Returns(tb testing.TB, done <-chan error, d time.Duration, what string) {
	tb.Helper()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		tb.Fatalf("%s did not return", what)
	}
}

// HeapInuse is the heap in use after two garbage collections.
func HeapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// GoroutinesCreated is how many goroutines the process has started so far
// (runtime/metrics), to count what a piece of work starts.
func GoroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Receive returns the next value on ch; when none arrives within d the
// test fails with msg.
func Receive[T any](tb testing.TB, ch <-chan T, d time.Duration, msg string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		tb.Fatalf("%s (waited %v)", msg, d)
	}
	var zero T
	return zero
}
