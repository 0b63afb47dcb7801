package resilience

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/mapping"
)

// GRPCBalancerName is the grpc-go load-balancing policy under which a
// gRPC upstream's ClientConn sends each call to the endpoint the Guard
// picked for it (WithEndpoint); grpc-go keeps one SubConn per endpoint and
// reconnects them. A call without an endpoint in its context goes round
// robin over the ready endpoints.
//
//	{"loadBalancingConfig":[{"meshgate_endpoint":{}}]}
const GRPCBalancerName = "meshgate_endpoint"

// GRPCServiceConfig is the service config selecting GRPCBalancerName.
const GRPCServiceConfig = `{"loadBalancingConfig":[{"` + GRPCBalancerName + `":{}}]}`

func init() {
	balancer.Register(base.NewBalancerBuilder(GRPCBalancerName, pickerBuilder{}, base.Config{}))
}

type endpointKey struct{}

// WithEndpoint returns ctx carrying the endpoint a gRPC call must use.
func WithEndpoint(ctx context.Context, ep *Endpoint) context.Context {
	return context.WithValue(ctx, endpointKey{}, ep)
}

// EndpointFrom returns the endpoint WithEndpoint put in ctx, or nil.
func EndpointFrom(ctx context.Context) *Endpoint {
	ep, _ := ctx.Value(endpointKey{}).(*Endpoint)
	return ep
}

// errNotConnected fails a call whose endpoint has no ready connection in
// this ClientConn (the Guard records a connect failure and may retry on
// another endpoint).
var errNotConnected = status.Error(codes.Unavailable, notConnected)

const notConnected = "meshgate: endpoint not connected"

type guardAttr struct{}

// ResolverAddresses returns the resolver addresses of the Guard's
// endpoints, in order, carrying the Guard for the picker: a call made
// without WithEndpoint (e.g. a gRPC → gRPC proxy call) is still balanced
// by the Guard — keyed on the x-mgp-uin request header for consistent
// hashing — and its outcome recorded (weights, ejection), without the
// Guard's admission and retries.
func (g *Guard) ResolverAddresses() []resolver.Address {
	out := make([]resolver.Address, len(g.s.eps))
	for i, e := range g.s.eps {
		out[i] = resolver.Address{Addr: e.addr, BalancerAttributes: attributes.New(guardAttr{}, g)}
	}
	return out
}

type pickerBuilder struct{}

func (pickerBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	p := &picker{byAddr: make(map[string]balancer.SubConn, len(info.ReadySCs))}
	for sc, sci := range info.ReadySCs {
		p.byAddr[sci.Address.Addr] = sc
		p.all = append(p.all, sc)
		if g, ok := sci.Address.BalancerAttributes.Value(guardAttr{}).(*Guard); ok {
			p.guard = g
		}
	}
	return p
}

type picker struct {
	byAddr map[string]balancer.SubConn
	all    []balancer.SubConn
	next   atomic.Uint32
	guard  *Guard
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	ep, _ := info.Ctx.Value(endpointKey{}).(*Endpoint)
	if ep == nil {
		return p.pickUnguarded(info)
	}
	sc, ok := p.byAddr[ep.addr]
	if !ok {
		return balancer.PickResult{}, errNotConnected
	}
	return balancer.PickResult{SubConn: sc}, nil
}

// pickUnguarded balances a call that did not go through Guard.Do.
func (p *picker) pickUnguarded(info balancer.PickInfo) (balancer.PickResult, error) {
	if p.guard != nil {
		var key uint64
		if md, ok := metadata.FromOutgoingContext(info.Ctx); ok {
			if v := md.Get(mapping.MDUIN); len(v) > 0 {
				key, _ = strconv.ParseUint(v[0], 10, 64)
			}
		}
		// The Guard's choice, or the next one (clockwise for consistent
		// hashing) when it has no ready connection in this ClientConn.
		var tried Tried
		for range len(p.guard.s.eps) {
			ep := p.guard.bal.Pick(key, tried)
			if ep == nil {
				break
			}
			tried = tried.With(ep.index)
			if sc, ok := p.byAddr[ep.addr]; ok {
				ep.inflight.Add(1)
				start := p.guard.s.clock()
				ctx := info.Ctx
				return balancer.PickResult{SubConn: sc, Done: func(di balancer.DoneInfo) {
					ep.inflight.Add(-1)
					now := p.guard.s.clock()
					ep.record(ClassifyGRPC(ctx, di.Err), now-start, now)
				}}, nil
			}
		}
	}
	return balancer.PickResult{SubConn: p.all[int(p.next.Add(1))%len(p.all)]}, nil
}

// ClassifyGRPC maps a gRPC call's error to an Outcome. ctx is the call's
// context (a call cancelled by its caller, or a hedge that lost, is
// Cancelled). Application-level codes (UNKNOWN with x-mgp-result,
// NOT_FOUND, INVALID_ARGUMENT...) are successes for the endpoint's health.
func ClassifyGRPC(ctx context.Context, err error) Outcome {
	if err == nil {
		return Success
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Cancelled
	}
	switch status.Code(err) {
	case codes.Unavailable:
		if status.Convert(err).Message() == notConnected {
			return ConnectFailure
		}
		return Unavailable
	case codes.ResourceExhausted:
		return Exhausted
	case codes.DeadlineExceeded:
		return Timeout
	case codes.Internal, codes.DataLoss:
		return Failure
	case codes.Canceled:
		return Cancelled
	}
	return Success
}

// ClassifyResult maps a private reply's result (PROTOCOL.md) to an
// Outcome: 5 timeout, 6 overloaded, 7 unavailable, 9 internal and 16 data
// loss count against the endpoint; everything else is the application's.
func ClassifyResult(result uint16) Outcome {
	switch result {
	case 5:
		return Timeout
	case 6:
		return Exhausted
	case 7:
		return Unavailable
	case 9, 16:
		return Failure
	case 11:
		return Cancelled
	}
	return Success
}
