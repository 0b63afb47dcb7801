package upstream

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// Endpoint is one upstream address and all its per-endpoint state, in one
// place: health (live connections), calls in flight, counters, a latency
// EWMA and its connection slots. Picking is the pool's resilience Guard's
// (one balancer for both protocols: the configured lb over adaptive
// weights, with ejection); res mirrors liveness into it. Safe for
// concurrent use.
type Endpoint struct {
	addr     string
	live     atomic.Int32 // live connections; 0 = ejected
	requests atomic.Uint64
	failures atomic.Uint64

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

// InFlight is the number of calls (and open stream exchanges) in flight on
// the endpoint, as the Guard's balancer sees it.
func (e *Endpoint) InFlight() int64 { return e.res.InFlight() }

// Latency is the endpoint's latency EWMA, as the Guard's adaptive weights
// see it (0 before the first sample).
func (e *Endpoint) Latency() time.Duration { return e.res.Latency() }

// Requests and Failures count calls sent and transport failures.
func (e *Endpoint) Requests() uint64 { return e.requests.Load() }

// Failures counts calls that failed in transport (not failed replies).
func (e *Endpoint) Failures() uint64 { return e.failures.Load() }

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

// begin and end bracket one call on the endpoint (its counters; in-flight
// and latency are the Guard's, which brackets the attempt).
func (e *Endpoint) begin() { e.requests.Add(1) }

func (e *Endpoint) end(err error) {
	if err != nil {
		e.failures.Add(1)
	}
}

type endpointSinkKey struct{}

// WithEndpointSink returns a context under which Do and Send store the
// address of the endpoint they send to in *sink (the last one tried), for
// access logs and spans.
func WithEndpointSink(ctx context.Context, sink *string) context.Context {
	return context.WithValue(ctx, endpointSinkKey{}, sink)
}

// reportEndpoint stores addr in ctx's endpoint sink, if any.
func reportEndpoint(ctx context.Context, addr string) {
	if p, ok := ctx.Value(endpointSinkKey{}).(*string); ok {
		*p = addr
	}
}
