package outbound

import (
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// Resource limits of a grpc listener (config.Limits, docs/security-limits.md).
//
// grpc-go enforces most of them itself: MAX_CONCURRENT_STREAMS, receive
// windows, message sizes, header list size, keepalive enforcement and
// connection idle/age. Two are MeshGate's, in a stream interceptor:
//
//   - a per-connection cap on calls in flight (fairness: one connection
//     cannot take every upstream slot; over it a call fails at once with
//     RESOURCE_EXHAUSTED);
//   - a receive timeout: a call whose request message has not fully
//     arrived within RecvTimeout of its headers ends with
//     DEADLINE_EXCEEDED. grpc-go has no per-stream receive deadline, so the
//     first RecvMsg runs on a helper goroutine that outlives the handler
//     only until grpc-go closes the stream.

// Errors returned to callers: fixed text, nothing from the input and no
// upstream address or socket error (those go to the Debug log).
var (
	errUpstreamUnavailable = status.Error(codes.Unavailable, "outbound: upstream unavailable")
	errUpstreamBusy        = status.Error(codes.ResourceExhausted, "outbound: upstream overloaded")
	errBadFrame            = status.Error(codes.InvalidArgument, "outbound: request cannot be encoded as a frame")
	errUpstreamInternal    = status.Error(codes.Internal, "outbound: upstream call failed")
	errConnBusy            = status.Error(codes.ResourceExhausted, "outbound: too many calls in flight on this connection")
	errRecvTimeout         = status.Error(codes.DeadlineExceeded, "outbound: request message not received in time")
)

// limiter enforces the interceptor-side limits.
type limiter struct {
	lim config.Limits

	mu    sync.Mutex
	conns map[*peer.Peer]int // calls in flight per connection
}

func newLimiter(l config.Limits) *limiter {
	return &limiter{lim: l, conns: map[*peer.Peer]int{}}
}

// serverOptions are the grpc-go options implementing l.
func (lm *limiter) serverOptions() []grpc.ServerOption {
	l := lm.lim
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.InitialWindowSize(l.StreamWindow),
		grpc.InitialConnWindowSize(l.ConnWindow),
		grpc.MaxRecvMsgSize(l.MaxRecvMessageSize),
		grpc.MaxSendMsgSize(l.MaxSendMessageSize),
		grpc.MaxHeaderListSize(uint32(l.MaxHeaderListSize)),
		grpc.ConnectionTimeout(l.RecvTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.MaxConnectionIdle,
			MaxConnectionAge:      l.MaxConnectionAge,
			MaxConnectionAgeGrace: l.MaxConnectionAgeGrace,
			Time:                  l.KeepaliveTime,
			Timeout:               l.KeepaliveTimeout,
		}),
		grpc.ChainStreamInterceptor(lm.intercept),
	}
}

// acquire takes one in-flight slot of the call's connection.
func (lm *limiter) acquire(p *peer.Peer) bool {
	if p == nil || lm.lim.MaxInFlightPerConnection <= 0 {
		return true
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	n := lm.conns[p]
	if n >= lm.lim.MaxInFlightPerConnection {
		return false
	}
	lm.conns[p] = n + 1
	return true
}

func (lm *limiter) release(p *peer.Peer) {
	if p == nil || lm.lim.MaxInFlightPerConnection <= 0 {
		return
	}
	lm.mu.Lock()
	if n := lm.conns[p] - 1; n > 0 {
		lm.conns[p] = n
	} else {
		delete(lm.conns, p)
	}
	lm.mu.Unlock()
}

func (lm *limiter) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	// grpc-go puts one *peer.Peer in the context of each connection, shared
	// by all its streams: it identifies the connection.
	p, _ := peer.FromContext(ss.Context())
	if !lm.acquire(p) {
		return errConnBusy
	}
	defer lm.release(p)
	if lm.lim.RecvTimeout <= 0 {
		return h(srv, ss)
	}
	// A call whose own deadline comes first needs no helper: grpc-go closes
	// the stream at the deadline, which ends a blocked RecvMsg.
	if dl, ok := ss.Context().Deadline(); ok && time.Until(dl) <= lm.lim.RecvTimeout {
		return h(srv, ss)
	}
	ls := limitedStreamPool.Get().(*limitedStream)
	ls.ServerStream, ls.timeout, ls.first = ss, lm.lim.RecvTimeout, true
	err := h(srv, ls)
	ls.ServerStream = nil
	limitedStreamPool.Put(ls)
	return err
}

// limitedStream bounds the wait for the first request message.
type limitedStream struct {
	grpc.ServerStream
	timeout time.Duration
	first   bool
}

var limitedStreamPool = sync.Pool{New: func() any { return new(limitedStream) }}

func (ls *limitedStream) RecvMsg(m any) error {
	msg, ok := m.(*rawcodec.Message)
	if !ls.first || !ok {
		return ls.ServerStream.RecvMsg(m)
	}
	ls.first = false
	return recvWithin(ls.ServerStream, msg, ls.timeout)
}

// recvOp is one first-message receive on a helper goroutine. It receives
// into its own Message so that, when the caller gives up, a late message
// never lands in a buffer the caller has reused.
type recvOp struct {
	ss    grpc.ServerStream
	msg   rawcodec.Message
	err   error
	state atomic.Int32 // recvPending → recvDone (helper) or recvAbandoned (caller)
	done  chan struct{}
	timer *time.Timer
}

const (
	recvPending int32 = iota
	recvDone
	recvAbandoned
)

var recvPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &recvOp{done: make(chan struct{}, 1), timer: t}
}}

func (op *recvOp) run() {
	op.err = op.ss.RecvMsg(&op.msg)
	if op.state.CompareAndSwap(recvPending, recvDone) {
		op.done <- struct{}{}
		return
	}
	// Abandoned: the caller has returned; drop what arrived.
	op.msg.Free()
}

func recvWithin(ss grpc.ServerStream, dst *rawcodec.Message, d time.Duration) error {
	op := recvPool.Get().(*recvOp)
	op.ss = ss
	op.state.Store(recvPending)
	op.timer.Reset(d)
	go op.run()
	select {
	case <-op.done:
	case <-op.timer.C:
		if op.state.CompareAndSwap(recvPending, recvAbandoned) {
			// op now belongs to the helper goroutine (never pooled again):
			// it returns once grpc-go ends the stream after this error.
			return errRecvTimeout
		}
		<-op.done
	}
	op.timer.Stop()
	err := op.err
	dst.Free()
	*dst = op.msg
	op.msg = rawcodec.Message{}
	op.ss, op.err = nil, nil
	recvPool.Put(op)
	return err
}
