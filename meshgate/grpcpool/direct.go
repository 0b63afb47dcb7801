package grpcpool

import (
	"context"
	"crypto/tls"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcdirect"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// newDirect builds the direct-transport endpoints of upstream u
// (config.Upstream.DirectTransport), one per Guard endpoint in the same order,
// each with u.Connections HTTP/2 connections, recording grpc-go's client
// metrics on m (nil: none).
func newDirect(u config.Upstream, n int, tc *tlsconf.Client, m *grpcdirect.Metrics) []*grpcdirect.Endpoint {
	cp := connectParams(u)
	// The same :authority and TLS name as the grpc-go ClientConns: the
	// configured server_name, else the upstream's name (docs/security-tls.md).
	authority := u.Name
	if u.TLS != nil && u.TLS.ServerName != "" {
		authority = u.TLS.ServerName
	}
	var tlsFn func(ctx context.Context, addr string) (*tls.Config, error)
	if tc != nil {
		tlsFn = func(ctx context.Context, _ string) (*tls.Config, error) {
			cfg, err := tc.Config(ctx, "")
			if err == nil && cfg.ServerName == "" {
				cfg.ServerName = authority
			}
			return cfg, err
		}
	}
	out := make([]*grpcdirect.Endpoint, len(u.Endpoints))
	for i, addr := range u.Endpoints {
		out[i] = grpcdirect.New(grpcdirect.Config{
			Addr:           addr,
			Authority:      authority,
			Conns:          n,
			TLS:            tlsFn,
			MaxRecvMsgSize: u.RecvSize(),
			MaxSendMsgSize: u.SendSize(),
			BackoffBase:    cp.Backoff.BaseDelay,
			BackoffMax:     cp.Backoff.MaxDelay,
			ConnectTimeout: cp.MinConnectTimeout,
			Metrics:        m,
		})
	}
	return out
}

// invokeDirect makes a unary call over the direct transport. A call made
// through the Guard (resilience.WithEndpoint) goes to the endpoint it
// picked; any other call (a gRPC → gRPC proxy call) is balanced by the
// Guard here — keyed on the x-mgp-uin header for consistent hashing, the
// next endpoint with a ready connection if that one has none — and its
// outcome recorded, as the grpc-go picker does.
func (p *Pool) invokeDirect(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error {
	if ep := resilience.EndpointFrom(ctx); ep != nil {
		return p.direct[ep.Index()].Invoke(ctx, method, req, reply, opts...)
	}
	var key uint64
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		if v := md.Get(mapping.MDUIN); len(v) > 0 {
			key, _ = strconv.ParseUint(v[0], 10, 64)
		}
	}
	i := 0
	if ep := p.guard.Pick(key); ep != nil {
		i = ep.Index()
	}
	for k := range len(p.direct) {
		if j := (i + k) % len(p.direct); p.direct[j].AnyReady() {
			i = j
			break
		}
	}
	ge := p.guard.Endpoints()[i]
	release := ge.Hold() // least_request sees the call
	start := time.Now()
	err := p.direct[i].Invoke(ctx, method, req, reply, opts...)
	release()
	ge.Record(resilience.ClassifyGRPC(ctx, err), time.Since(start))
	return err
}

// directReady: every connection index has a ready connection to some
// endpoint (as each grpc-go ClientConn is ready with one ready endpoint).
func (p *Pool) directReady() bool {
	for c := range p.cfg.Connections {
		ok := false
		for _, d := range p.direct {
			if d.Ready(c) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return p.cfg.Connections > 0
}
