package push

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/meshgate/meshgate/codec"
)

// recConn records pushed frames; full/closed make Push refuse.
type recConn struct {
	mu     sync.Mutex
	got    []codec.Frame
	full   bool
	closed bool
}

func (c *recConn) Push(f *codec.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.full {
		return fmt.Errorf("conn 1: %w", ErrFull)
	}
	g := *f
	g.Body = append([]byte(nil), f.Body...)
	g.Ext = append([]codec.Ext(nil), f.Ext...)
	c.got = append(c.got, g)
	return nil
}

func (c *recConn) frames() []codec.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]codec.Frame(nil), c.got...)
}

func TestRegistryLearnDeliverClose(t *testing.T) {
	r := NewRegistry(Limits{})
	c := &recConn{}
	b := r.Attach(c)
	if _, err := r.Deliver(7, &codec.Frame{Cmd: 1}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("before learn: %v", err)
	}
	if !b.Learn(7) || !b.Learn(7) || b.Learn(0) {
		t.Fatal("learn")
	}
	if r.Bindings() != 1 {
		t.Fatalf("bindings %d", r.Bindings())
	}
	n, err := r.Deliver(7, &codec.Frame{Cmd: 1, Body: []byte("hi"), Flags: codec.FlagPush})
	if n != 1 || err != nil || len(c.frames()) != 1 || string(c.frames()[0].Body) != "hi" {
		t.Fatalf("deliver: %d %v %v", n, err, c.frames())
	}
	b.Close()
	if r.Bindings() != 0 {
		t.Fatalf("bindings after close %d", r.Bindings())
	}
	if _, err := r.Deliver(7, &codec.Frame{Cmd: 1}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("after close: %v", err)
	}
	if b.Learn(8) || r.Bindings() != 0 {
		t.Fatal("a closed binding learned")
	}
}

func TestRegistryBoundsPerConnAndPerUIN(t *testing.T) {
	r := NewRegistry(Limits{MaxConnsPerUIN: 2, MaxUINsPerConn: 2})
	c := &recConn{}
	b := r.Attach(c)
	if !b.Learn(1) || !b.Learn(2) || b.Learn(3) {
		t.Fatal("per-connection bound: the third uin must not be learned")
	}
	if got := b.UINs(); len(got) != 2 {
		t.Fatalf("uins %v", got)
	}
	// Multi-device: three connections of uin 9, bound 2: the oldest goes.
	cs := []*recConn{{}, {}, {}}
	bs := make([]*Binding, 3)
	for i := range cs {
		bs[i] = r.Attach(cs[i])
		if !bs[i].Learn(9) {
			t.Fatalf("device %d", i)
		}
	}
	n, err := r.Deliver(9, &codec.Frame{Cmd: 5})
	if n != 2 || err != nil {
		t.Fatalf("deliver to devices: %d %v", n, err)
	}
	if len(cs[0].frames()) != 0 || len(cs[1].frames()) != 1 || len(cs[2].frames()) != 1 {
		t.Fatal("the oldest device must be unbound")
	}
	if len(bs[0].UINs()) != 0 {
		t.Fatalf("evicted binding still lists %v", bs[0].UINs())
	}
	// The evicted connection may learn again (it evicts the next oldest).
	if !bs[0].Learn(9) {
		t.Fatal("relearn")
	}
	for _, b := range append(bs, b) {
		b.Close()
	}
	if r.Bindings() != 0 {
		t.Fatalf("bindings %d after every close", r.Bindings())
	}
}

func TestRegistryLoginReplacesUIN(t *testing.T) {
	r := NewRegistry(Limits{})
	b := r.Attach(&recConn{})
	b.Login(1)
	b.Login(2)
	if got := b.UINs(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("uins after relogin %v", got)
	}
	if _, err := r.Deliver(1, &codec.Frame{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("old uin still bound: %v", err)
	}
	if r.Bindings() != 1 {
		t.Fatalf("bindings %d", r.Bindings())
	}
}

func TestRegistryDeliverOutcomes(t *testing.T) {
	r := NewRegistry(Limits{})
	full, closed, ok := &recConn{full: true}, &recConn{closed: true}, &recConn{}
	r.Attach(full).Learn(1)
	r.Attach(closed).Learn(1)
	if _, err := r.Deliver(1, &codec.Frame{}); !errors.Is(err, ErrFull) {
		t.Fatalf("full + closed: %v, want ErrFull", err)
	}
	r.Attach(closed).Learn(2)
	if _, err := r.Deliver(2, &codec.Frame{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("only closing: %v, want ErrNotConnected", err)
	}
	r.Attach(ok).Learn(1)
	if n, err := r.Deliver(1, &codec.Frame{}); n != 1 || err != nil {
		t.Fatalf("one of three takes it: %d %v", n, err)
	}
}

// TestRegistryConcurrent: connections learning, closing and being pushed to
// at once leave no binding behind (-race).
func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry(Limits{MaxConnsPerUIN: 3, MaxUINsPerConn: 3})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				b := r.Attach(&recConn{})
				b.Learn(uint64(i%17 + 1))
				b.Learn(uint64(g + 1))
				if i%3 == 0 {
					b.Login(uint64(i%5 + 1))
				}
				r.Deliver(uint64(i%7+1), &codec.Frame{})
				b.Close()
			}
		})
	}
	wg.Wait()
	if r.Bindings() != 0 {
		t.Fatalf("%d bindings leaked", r.Bindings())
	}
	for i := range r.shards {
		if len(r.shards[i].m) != 0 {
			t.Fatalf("shard %d keeps %d uins", i, len(r.shards[i].m))
		}
	}
}

// nopConn takes every push.
type nopConn struct{}

func (nopConn) Push(*codec.Frame) error { return nil }

func BenchmarkLearnSameUIN(b *testing.B) {
	r := NewRegistry(Limits{})
	bd := r.Attach(nopConn{})
	bd.Learn(42)
	b.ReportAllocs()
	for b.Loop() {
		bd.Learn(42)
	}
}

func BenchmarkDeliver(b *testing.B) {
	r := NewRegistry(Limits{})
	for i := range 10000 {
		r.Attach(nopConn{}).Learn(uint64(i + 1))
	}
	f := &codec.Frame{Cmd: 1, Flags: codec.FlagPush, Body: []byte("x")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := r.Deliver(uint64(i%10000+1), f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFanout(t *testing.T) {
	a, b := NewRegistry(Limits{}), NewRegistry(Limits{})
	ca, cb := &recConn{}, &recConn{full: true}
	a.Attach(ca).Learn(1)
	b.Attach(cb).Learn(1)
	b.Attach(&recConn{full: true}).Learn(2)
	fo := Fanout{a, b}
	if n, err := fo.Deliver(1, &codec.Frame{}); n != 1 || err != nil {
		t.Fatalf("uin 1: %d %v", n, err)
	}
	if _, err := fo.Deliver(2, &codec.Frame{}); !errors.Is(err, ErrFull) {
		t.Fatalf("uin 2: %v", err)
	}
	if _, err := fo.Deliver(3, &codec.Frame{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("uin 3: %v", err)
	}
	if _, err := (Fanout{}).Deliver(3, &codec.Frame{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("empty: %v", err)
	}
}
