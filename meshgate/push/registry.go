// Package push delivers server-initiated messages (MGP PUSH frames) to the
// downstream connections of users connected to this MeshGate.
//
// A [Registry] maps uin → the downstream connections that carry it. A
// private listener attaches each connection ([Registry.Attach]) and binds
// the uins it learns: from every request (the default) or only from a
// successful login reply (listeners[].push.login_cmd). Entries die with the
// connection; a uin is bound to at most MaxConnsPerUIN connections
// (multi-device: binding one more unbinds the oldest) and a connection to at
// most MaxUINsPerConn uins (further uins are not learned), so memory is
// bounded by the connections held.
//
// The [Service] serves the gRPC push API meshgate.v1.Push (Send, SendBatch)
// on a grpc listener; a [Forwarder] takes the PUSH frames a private upstream
// sends on a pooled connection to the uin's downstream connections or to a
// gRPC method. A push for a uin held by another replica is NOT_FOUND here:
// the caller routes by consistent hash on uin (docs/push-streams.md).
package push

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/meshgate/meshgate/codec"
)

// Errors of a delivery. Service maps them to gRPC codes.
var (
	// ErrNotConnected: no connection of this replica carries the uin.
	ErrNotConnected = errors.New("push: user not connected")
	// ErrFull: the connection's push queue bound is reached (backpressure).
	ErrFull = errors.New("push: connection queue full")
	// ErrClosed: the connection is closing.
	ErrClosed = errors.New("push: connection closed")
)

// Conn is a downstream connection pushes are written to.
type Conn interface {
	// Push encodes f and queues it for writing without blocking. It
	// returns an error wrapping ErrFull when the connection's queued bytes
	// exceed its bound, ErrClosed when it is closing. f is not retained.
	Push(f *codec.Frame) error
}

// Limits bound a Registry.
type Limits struct {
	MaxConnsPerUIN int // connections one uin is bound to; default 8
	MaxUINsPerConn int // uins one connection is bound to; default 4
}

const nShards = 64

// Registry maps uin → bound connections. Safe for concurrent use.
type Registry struct {
	perUIN, perConn atomic.Int64 // Limits, changed by SetLimits (a reload)
	shards          [nShards]shard
	size            atomic.Int64 // bindings
}

type shard struct {
	mu sync.RWMutex
	m  map[uint64][]*Binding
}

// NewRegistry returns an empty registry.
func NewRegistry(l Limits) *Registry {
	r := &Registry{}
	r.SetLimits(l)
	for i := range r.shards {
		r.shards[i].m = make(map[uint64][]*Binding)
	}
	return r
}

// SetLimits changes the bounds for bindings made from now on (a reload);
// existing bindings stay.
func (r *Registry) SetLimits(l Limits) {
	if l.MaxConnsPerUIN <= 0 {
		l.MaxConnsPerUIN = 8
	}
	if l.MaxUINsPerConn <= 0 {
		l.MaxUINsPerConn = 4
	}
	r.perUIN.Store(int64(l.MaxConnsPerUIN))
	r.perConn.Store(int64(l.MaxUINsPerConn))
}

func (r *Registry) shard(uin uint64) *shard {
	// Fibonacci hashing spreads sequential uins over the shards.
	return &r.shards[(uin*0x9E3779B97F4A7C15)>>58]
}

// Bindings returns the number of (uin, connection) bindings held.
func (r *Registry) Bindings() int { return int(r.size.Load()) }

// Binding is one connection's membership in a Registry. Lock order: a
// shard's mu before a Binding's mu.
type Binding struct {
	r    *Registry
	c    Conn
	last atomic.Uint64 // the last uin bound: Learn's lock-free fast path

	mu     sync.Mutex
	uins   []uint64
	closed bool
}

// Attach registers c; the Binding holds no uin until Learn or Login. Call
// Close when the connection ends.
func (r *Registry) Attach(c Conn) *Binding {
	return &Binding{r: r, c: c, uins: make([]uint64, 0, 1)}
}

// Learn binds uin (≠ 0) to the connection when it is not bound yet and the
// connection has room. It reports whether uin is bound afterwards. The
// common case (the connection's uin again) takes no lock and allocates
// nothing.
func (b *Binding) Learn(uin uint64) bool {
	if uin == 0 {
		return false
	}
	if b.last.Load() == uin {
		return true
	}
	return b.bind(uin, false)
}

// Login binds uin as the connection's only uin (a successful login reply):
// any other uin the connection held is unbound.
func (b *Binding) Login(uin uint64) bool {
	if uin == 0 {
		return false
	}
	return b.bind(uin, true)
}

func (b *Binding) bind(uin uint64, only bool) bool {
	if only {
		b.mu.Lock()
		var drop []uint64
		for _, u := range b.uins {
			if u != uin {
				drop = append(drop, u)
			}
		}
		b.mu.Unlock()
		for _, u := range drop {
			b.unbind(u)
		}
	}
	r := b.r
	s := r.shard(uin)
	s.mu.Lock()
	defer s.mu.Unlock()
	// b.mu is never held while another Binding's mu is taken (two binds
	// evicting each other's connections would deadlock).
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return false
	case contains(b.uins, uin):
		b.last.Store(uin)
		b.mu.Unlock()
		return true
	case int64(len(b.uins)) >= r.perConn.Load():
		b.mu.Unlock()
		return false
	}
	b.mu.Unlock()
	list := s.m[uin]
	for int64(len(list)) >= r.perUIN.Load() {
		// Multi-device bound: the oldest binding of this uin gives way.
		old := list[0]
		old.mu.Lock()
		old.uins = remove(old.uins, uin)
		old.last.CompareAndSwap(uin, 0)
		old.mu.Unlock()
		list = append(list[:0], list[1:]...)
		r.size.Add(-1)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := !b.closed && int64(len(b.uins)) < r.perConn.Load() // Close or a concurrent bind meanwhile
	if ok {
		list = append(list, b)
		b.uins = append(b.uins, uin)
		b.last.Store(uin)
		r.size.Add(1)
	}
	if len(list) == 0 {
		delete(s.m, uin)
	} else {
		s.m[uin] = list
	}
	return ok
}

func contains(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (b *Binding) unbind(uin uint64) {
	s := b.r.shard(uin)
	s.mu.Lock()
	b.mu.Lock()
	n := len(b.uins)
	b.uins = remove(b.uins, uin)
	b.last.CompareAndSwap(uin, 0)
	b.mu.Unlock()
	if len(b.uins) != n {
		b.r.dropFromShard(s, uin, b)
	}
	s.mu.Unlock()
}

// dropFromShard removes b from uin's list; s.mu is held.
func (r *Registry) dropFromShard(s *shard, uin uint64, b *Binding) {
	list := s.m[uin]
	for i, x := range list {
		if x == b {
			list = append(list[:i], list[i+1:]...)
			r.size.Add(-1)
			break
		}
	}
	if len(list) == 0 {
		delete(s.m, uin)
	} else {
		s.m[uin] = list
	}
}

// UINs returns the uins bound to the connection.
func (b *Binding) UINs() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]uint64(nil), b.uins...)
}

// Close unbinds every uin of the connection; later Learn/Login do nothing.
func (b *Binding) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	uins := b.uins
	b.uins = nil
	b.last.Store(0)
	b.mu.Unlock()
	for _, u := range uins {
		s := b.r.shard(u)
		s.mu.Lock()
		b.r.dropFromShard(s, u, b)
		s.mu.Unlock()
	}
}

func remove(s []uint64, v uint64) []uint64 {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// Deliver pushes f to every connection bound to uin. It returns how many
// connections queued it; with none, an error: ErrNotConnected when no
// open connection carries uin, else a refusal wrapping ErrFull. Deliver never blocks on a socket.
func (r *Registry) Deliver(uin uint64, f *codec.Frame) (int, error) {
	var stack [8]*Binding
	s := r.shard(uin)
	s.mu.RLock()
	conns := append(stack[:0], s.m[uin]...)
	s.mu.RUnlock()
	if len(conns) == 0 {
		return 0, ErrNotConnected
	}
	n := 0
	var full error
	for _, b := range conns {
		if err := b.c.Push(f); err != nil {
			if !errors.Is(err, ErrClosed) {
				full = err
			}
			continue
		}
		n++
	}
	switch {
	case n > 0:
		return n, nil
	case full != nil:
		return 0, full
	default:
		return 0, ErrNotConnected // every connection is closing
	}
}
