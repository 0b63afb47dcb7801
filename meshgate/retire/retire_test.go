package retire

import (
	"sync"
	"sync/atomic"
	"testing"
)

func newRefs() (*Refs, *atomic.Int32) {
	var closed atomic.Int32
	r := &Refs{}
	r.Init(func() { closed.Add(1) })
	return r, &closed
}

// TestRetireWaitsForLastCall: a retired pool closes when its last call
// releases it, not before; Acquire fails once retired.
func TestRetireWaitsForLastCall(t *testing.T) {
	r, closed := newRefs()
	if !r.Acquire() || !r.Acquire() {
		t.Fatal("Acquire on a live pool failed")
	}
	r.Retire()
	if r.Acquire() {
		t.Fatal("Acquire on a retired pool succeeded")
	}
	r.Release()
	if closed.Load() != 0 {
		t.Fatal("closed with a call in flight")
	}
	r.Release()
	if closed.Load() != 1 {
		t.Fatalf("closed %d times after the last release, want 1", closed.Load())
	}
}

// TestRetireIdleClosesAtOnce: retiring a pool with no call in flight
// closes it.
func TestRetireIdleClosesAtOnce(t *testing.T) {
	r, closed := newRefs()
	r.Retire()
	if closed.Load() != 1 {
		t.Fatalf("idle retire closed %d times, want 1", closed.Load())
	}
}

// TestClosingRefusesCalls: once the pool is closing, Acquire fails.
func TestClosingRefusesCalls(t *testing.T) {
	r, _ := newRefs()
	r.Closing()
	if r.Acquire() {
		t.Fatal("Acquire on a closing pool succeeded")
	}
}

// TestConcurrentCallsAndRetire: calls racing a Retire all release, and the
// pool is closed (at least once; close functions are idempotent) with no
// reference left.
func TestConcurrentCallsAndRetire(t *testing.T) {
	r, closed := newRefs()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if r.Acquire() {
					r.Release()
				}
			}
		}()
	}
	r.Retire()
	wg.Wait()
	if closed.Load() == 0 || r.n.Load() != 0 {
		t.Fatalf("closed %d times, %d references left", closed.Load(), r.n.Load())
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	r, _ := newRefs()
	b.ReportAllocs()
	for range b.N {
		if r.Acquire() {
			r.Release()
		}
	}
}
