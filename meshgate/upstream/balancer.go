package upstream

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// Endpoint is one upstream address and all its per-endpoint state, in one
// place: health (live connections), calls in flight, counters and a latency
// EWMA. Balancers read it; adaptive weights or outlier ejection would build
// on Observe and Latency. Safe for concurrent use.
type Endpoint struct {
	addr     string
	live     atomic.Int32 // live connections; 0 = ejected
	inflight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
	ewmaNS   atomic.Uint64 // float64 bits of the latency EWMA, ns

	// meshgate_upstream_requests_total children, resolved once per code
	reqVec   *prometheus.CounterVec
	upstream string
	reqCodes [17]atomic.Pointer[prometheus.Counter]

	res *resilience.Endpoint // this endpoint in the pool's Guard (resilience.go)

	// private pools: the connection slots (see PrivatePool.keep)
	rr    atomic.Uint32
	slots []atomic.Pointer[privconn.Conn]
}

// NewEndpoint returns the state of addr.
func NewEndpoint(addr string) *Endpoint { return &Endpoint{addr: addr} }

// Addr is the endpoint's host:port.
func (e *Endpoint) Addr() string { return e.addr }

// Healthy reports whether the endpoint has a live connection.
func (e *Endpoint) Healthy() bool { return e.live.Load() > 0 }

// InFlight is the number of calls in flight on the endpoint.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// Requests and Failures count calls sent and transport failures.
func (e *Endpoint) Requests() uint64 { return e.requests.Load() }

// Failures counts calls that failed in transport (not failed replies).
func (e *Endpoint) Failures() uint64 { return e.failures.Load() }

// ewmaAlpha weighs a new latency sample.
const ewmaAlpha = 0.2

// Observe records a finished call: its latency feeds the EWMA, a transport
// error counts as a failure. The hook for adaptive balancing.
func (e *Endpoint) Observe(d time.Duration, err error) {
	if err != nil {
		e.failures.Add(1)
	}
	for {
		old := e.ewmaNS.Load()
		v := float64(d)
		if old != 0 {
			v = ewmaAlpha*v + (1-ewmaAlpha)*math.Float64frombits(old)
		}
		if e.ewmaNS.CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

// Latency is the latency EWMA (0 before the first call).
func (e *Endpoint) Latency() time.Duration {
	return time.Duration(math.Float64frombits(e.ewmaNS.Load()))
}

// count adds one call answered with code c to the endpoint's counter.
func (e *Endpoint) count(c codes.Code) {
	if e.reqVec == nil {
		return
	}
	if int(c) >= len(e.reqCodes) {
		c = codes.Unknown
	}
	if p := e.reqCodes[c].Load(); p != nil {
		(*p).Inc()
		return
	}
	ctr := e.reqVec.WithLabelValues(e.upstream, e.addr, c.String())
	e.reqCodes[c].Store(&ctr)
	ctr.Inc()
}

// resultCode is the gRPC code of a reply's result (docs/protocol.md).
func resultCode(result uint16) codes.Code {
	c, _ := codec.GRPCCode(result)
	return codes.Code(c)
}

// begin and end bracket one call on the endpoint.
func (e *Endpoint) begin() time.Time {
	e.inflight.Add(1)
	e.requests.Add(1)
	return time.Now()
}

func (e *Endpoint) end(start time.Time, err error) {
	e.inflight.Add(-1)
	e.Observe(time.Since(start), err)
}

// Balancer picks a healthy endpoint for one request; key is the request's
// uin (the consistent-hash key). nil when none is healthy.
type Balancer interface {
	Pick(key uint64) *Endpoint
}

// NewBalancer returns the balancer of policy (config.LB*) over eps.
func NewBalancer(policy string, eps []*Endpoint) (Balancer, error) {
	if len(eps) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", ErrConfig)
	}
	switch policy {
	case config.LBRoundRobin, "":
		return &roundRobin{eps: eps}, nil
	case config.LBLeastRequest:
		return &p2c{eps: eps}, nil
	case config.LBConsistentHash:
		addrs := make([]string, len(eps))
		for i, e := range eps {
			addrs[i] = e.addr
		}
		return &hashRing{eps: eps, ring: newRing(addrs)}, nil
	}
	return nil, fmt.Errorf("%w: unknown lb %q", ErrConfig, policy)
}

// roundRobin takes healthy endpoints in turn.
type roundRobin struct {
	eps  []*Endpoint
	next atomic.Uint32
}

func (b *roundRobin) Pick(uint64) *Endpoint { return scan(b.eps, int(b.next.Add(1))) }

// scan returns the first healthy endpoint from start, in order.
func scan(eps []*Endpoint, start int) *Endpoint {
	n := len(eps)
	for k := range n {
		if e := eps[(start+k)%n]; e.Healthy() {
			return e
		}
	}
	return nil
}

// p2c is least request by power of two choices.
type p2c struct{ eps []*Endpoint }

func (b *p2c) Pick(uint64) *Endpoint {
	n := len(b.eps)
	if n == 1 {
		if b.eps[0].Healthy() {
			return b.eps[0]
		}
		return nil
	}
	x, y := b.eps[rand.IntN(n)], b.eps[rand.IntN(n)]
	switch xh, yh := x.Healthy(), y.Healthy(); {
	case xh && yh:
		if y.InFlight() < x.InFlight() {
			return y
		}
		return x
	case xh:
		return x
	case yh:
		return y
	}
	// Both sampled endpoints are down: fall back to a scan.
	return scan(b.eps, rand.IntN(n))
}

// hashRing is consistent hashing on the key (uin) over the ring.
type hashRing struct {
	eps  []*Endpoint
	ring *ring
}

func (b *hashRing) Pick(key uint64) *Endpoint {
	i := b.ring.lookup(key, func(i int) bool { return b.eps[i].Healthy() })
	if i < 0 {
		return nil
	}
	return b.eps[i]
}
