// Package grpcpool holds MeshGate's connections to gRPC upstreams: a few
// shared HTTP/2 connections (grpc.ClientConn) per upstream that every
// downstream connection multiplexes onto.
//
// Each upstream gets config.Upstream.Connections ClientConns; each
// ClientConn resolves the upstream's endpoints through its own manual
// resolver. Balancing is the pool's resilience.Guard (Guard): it picks the
// endpoint of each call by the configured policy (round_robin,
// least_request, consistent_hash on uin) over adaptive weights, with
// outlier ejection, and the ClientConn's balancer
// (resilience.GRPCBalancerName) sends the call to that endpoint's
// connection. An xds:/// target keeps grpc-go's xDS balancing.
// ServiceConfig is the grpc-go policy each lb name had before (kept for
// reference and tests).
//
// Reconnects back off from BackoffBase up to the upstream's
// reconnect_backoff_max (default 5s; grpc-go's own cap is 120s, which kept
// calls failing for many seconds after a long outage ended). Ready reports
// whether every ClientConn has a ready transport (for /readyz); see
// ready.go.
//
// An upstream whose one endpoint is an xds:/// target (config.XDSScheme) is
// resolved and balanced by the xDS control plane instead (grpc-go's xDS
// resolver; bootstrap from GRPC_XDS_BOOTSTRAP or GRPC_XDS_BOOTSTRAP_CONFIG).
//
// Calls are spread over the ClientConns round-robin. A Pool is reference
// counted so that a config reload can retire it while requests that started
// on it finish: Acquire/Release around each call, Retire when dropped.
//
// With the direct transport (config.Upstream.DirectTransport: the default
// of static endpoints; grpc_transport: grpc-go opts out) unary calls go
// over package grpcdirect's HTTP/2 connections instead (same Guard,
// endpoints, connection count, TLS, message limits, backoff and, with
// Options.Meter, grpc-go's client metrics); streams keep grpc-go
// (direct.go).
//
// With config.Upstream.TLS the pool dials with (m)TLS from package tlsconf:
// the CA, certificate and key files are re-read every Options.TLSRefresh
// and every new HTTP/2 connection handshakes with the current material;
// established connections are kept.
package grpcpool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	otelmetric "go.opentelemetry.io/otel/metric"
	"golang.org/x/net/http/httpproxy"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/balancer/leastrequest" // least_request_experimental
	_ "google.golang.org/grpc/balancer/ringhash"     // ring_hash_experimental
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	_ "google.golang.org/grpc/xds" // xds:/// upstreams: xDS resolver and balancers

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcdirect"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/rawio"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/retire"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// HashHeader is the metadata key consistent hashing uses (the request uin).
const HashHeader = mapping.MDUIN

// Errors.
var (
	ErrProtocol = errors.New("grpcpool: upstream protocol is not grpc")
	ErrClosed   = errors.New("grpcpool: pool closed")
	ErrTLS      = errors.New("grpcpool: tls")
)

// Gauge is the slice of a Prometheus gauge the pool reports to.
type Gauge interface{ Add(float64) }

// Options tune a Pool.
type Options struct {
	// Conns, when set, tracks the number of ClientConns; Transports the
	// number of endpoint connections they may open (ClientConns × endpoints).
	Conns, Transports Gauge
	// DialOptions are appended to the pool's own.
	DialOptions []grpc.DialOption
	// TLSRefresh is how often TLS files are re-read; default
	// config.DefaultTLSRefresh.
	TLSRefresh time.Duration
	// Resilience options (observer, logger) for the pool's Guard.
	Resilience []resilience.Option
	// Meter, when set, is the MeterProvider of grpc-go's OpenTelemetry
	// metrics (the one DialOptions instrument the ClientConns with): the
	// direct transport records the same client metrics on it.
	Meter otelmetric.MeterProvider
	// Registerer, when set, gets the pool's Prometheus metrics
	// (meshgate_grpc_upstream_connections_lost_total, lost.go).
	Registerer prometheus.Registerer
}

// Pool is the set of shared ClientConns of one gRPC upstream.
type Pool struct {
	cfg   config.Upstream
	conns []*grpc.ClientConn
	// lazy: an xds:/// target, whose balancer (ring_hash from a
	// DestinationRule, say) may stay IDLE until the first call.
	lazy bool
	next atomic.Uint32
	opts Options
	tls  *tlsconf.Client // nil: plaintext

	refs   retire.Refs
	once   sync.Once
	closed chan struct{}

	readiness // ready.go

	guard *resilience.Guard // nil for xDS targets

	// direct: the direct transport's endpoints (Guard order), which make
	// the unary calls; the ClientConns then only serve streams and connect
	// on their first one (direct.go).
	direct []*grpcdirect.Endpoint
}

// Guard is the pool's resilience Guard (adaptive weights, ejection,
// retries, breakers; package resilience), nil for an xds:/// target. A
// call made through it goes to the endpoint it picked
// (resilience.WithEndpoint, balancer resilience.GRPCBalancerName).
func (p *Pool) Guard() *resilience.Guard { return p.guard }

// ServiceConfig returns the gRPC service config JSON for an LB policy.
func ServiceConfig(lb string) string {
	switch lb {
	case config.LBLeastRequest:
		return `{"loadBalancingConfig":[{"least_request_experimental":{"choiceCount":2}}]}`
	case config.LBConsistentHash:
		return `{"loadBalancingConfig":[{"ring_hash_experimental":{"requestHashHeader":"` + HashHeader + `"}}]}`
	}
	return `{"loadBalancingConfig":[{"round_robin":{}}]}`
}

// New dials (lazily: grpc connects on first use) the upstream u.
func New(u config.Upstream, opts Options) (*Pool, error) {
	if u.Protocol != config.ProtoGRPC {
		return nil, fmt.Errorf("%w: %s is %q", ErrProtocol, u.Name, u.Protocol)
	}
	creds := insecure.NewCredentials()
	var tc *tlsconf.Client
	if u.TLS != nil {
		var err error
		if tc, err = tlsconf.NewClient(u.TLS, tlsconf.Options{Refresh: opts.TLSRefresh}); err != nil {
			return nil, fmt.Errorf("%w: upstream %s: %w", ErrTLS, u.Name, err)
		}
		creds = tc.Credentials()
	}
	n := u.Connections // resolved by config.ApplyDefaults
	if n <= 0 {
		if tc != nil {
			tc.Close()
		}
		return nil, fmt.Errorf("upstream %s: connections must be positive (unresolved config?)", u.Name)
	}
	p := &Pool{cfg: u, opts: opts, tls: tc, closed: make(chan struct{})}
	// The last Release of a retired pool may come from a completion
	// running on one of the pool's own connection readers (StartPolicy),
	// which closing waits for: close in the background (Done says when),
	// as the private pool does.
	p.refs.Init(func() { go p.close() })
	// fail undoes what New made so far.
	fail := func(err error) error {
		for _, c := range p.conns {
			_ = c.Close()
		}
		if tc != nil {
			tc.Close()
		}
		return fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	p.cfg.Endpoints = slices.Clone(u.Endpoints)
	state := resolver.State{}
	xdsTarget := len(u.Endpoints) == 1 && config.IsXDSTarget(u.Endpoints[0])
	p.lazy = xdsTarget
	svc := ServiceConfig(u.LB)
	if !xdsTarget {
		p.guard = resilience.New(u.Name, u.LB, u.Endpoints, u.Resilience, opts.Resilience...)
		svc = resilience.GRPCServiceConfig
		state.Addresses = p.guard.ResolverAddresses() // they carry the Guard to the picker
		for _, a := range state.Addresses {
			state.Endpoints = append(state.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{a}})
		}
	}
	for i := 0; i < n; i++ {
		target := "meshgate:///" + u.Name
		dopts := []grpc.DialOption{
			grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})),
			grpc.WithUserAgent("meshgate"),
			grpc.WithConnectParams(connectParams(u)),
		}
		if !envProxy {
			// grpc-go's own dial (plain TCP) with the connection's
			// reads and writes off the runtime's blocking-syscall path
			// (rawio). grpc-go ignores HTTPS_PROXY with a custom dialer:
			// keep its own where the environment names a proxy.
			dopts = append(dopts, grpc.WithContextDialer(rawio.Dial))
		}
		dopts = append(dopts, transportOptions()...)
		if xdsTarget {
			// Endpoints and load balancing come from the xDS control plane.
			target = u.Endpoints[0]
		} else {
			r := manual.NewBuilderWithScheme("meshgate")
			r.InitialState(state)
			dopts = append(dopts, grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(svc))
		}
		dopts = append(dopts, opts.DialOptions...)
		cc, err := grpc.NewClient(target, dopts...)
		if err != nil {
			return nil, fail(err)
		}
		if !u.DirectTransport() {
			cc.Connect()
		}
		p.conns = append(p.conns, cc)
	}
	if u.DirectTransport() && p.guard != nil {
		m, err := grpcdirect.NewMetrics(opts.Meter, "meshgate:///"+u.Name) // the ClientConns' canonical target
		if err != nil {
			return nil, fail(err)
		}
		lost, err := lostCounter(opts.Registerer, u.Name)
		if err != nil {
			return nil, fail(err)
		}
		p.direct = newDirect(u, n, tc, m, lost)
	}
	p.watchStates()
	if opts.Conns != nil {
		opts.Conns.Add(float64(len(p.conns)))
	}
	if opts.Transports != nil {
		opts.Transports.Add(float64(len(p.conns) * len(u.Endpoints)))
	}
	return p, nil
}

// Flow-control windows and buffers of the pool's HTTP/2 connections.
//
// Static windows: grpc-go's default dynamic flow control sends a BDP ping
// (and the peer its PING ack) on most DATA frames a connection receives,
// which at one call per millisecond is a ping per call, each a write and a
// wake-up on both sides. A fixed window large enough for the upstreams of a
// data-centre mesh (16 MiB per connection, 4 MiB per stream: a 4 MiB
// message, the default message limit, fits in one window) removes them;
// window updates are then sent once a quarter of a window has been read.
//
// A pool has a few connections shared by every downstream caller, so the
// default 32 KB read buffer per connection is kept (it saves read syscalls
// under load); the write buffer is grpc-go's shared pool (its default).
const (
	StreamWindow = 4 << 20
	ConnWindow   = 16 << 20
)

// envProxy: the environment names an HTTPS proxy, which grpc-go's own
// dialer honours (HTTPS_PROXY, as net/http reads it).
var envProxy = httpproxy.FromEnvironment().HTTPSProxy != ""

// transportOptions are the dial options tuning the pool's transports.
func transportOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithStaticStreamWindowSize(StreamWindow),
		grpc.WithStaticConnWindowSize(ConnWindow),
	}
}

// Name is the upstream name.
func (p *Pool) Name() string { return p.cfg.Name }

// Config is the upstream config the pool was built from.
func (p *Pool) Config() config.Upstream { return p.cfg }

// Same reports whether u would build an identical pool (so a reload can
// keep this one).
func (p *Pool) Same(u config.Upstream) bool {
	a, b := p.cfg, u
	if !slices.Equal(a.Endpoints, b.Endpoints) || a.DirectTransport() != b.DirectTransport() {
		return false
	}
	if (a.TLS == nil) != (b.TLS == nil) || (a.TLS != nil && *a.TLS != *b.TLS) {
		return false
	}
	a.Endpoints, b.Endpoints, a.TLS, b.TLS = nil, nil, nil, nil
	return a.Name == b.Name && a.Protocol == b.Protocol && a.LB == b.LB && a.Connections == b.Connections &&
		a.ReconnectBackoffMax == b.ReconnectBackoffMax && a.Resilience == b.Resilience
}

// Conn returns the next shared ClientConn.
func (p *Pool) Conn() *grpc.ClientConn {
	if len(p.conns) == 1 {
		return p.conns[0]
	}
	return p.conns[p.next.Add(1)%uint32(len(p.conns))]
}

// Len is the number of ClientConns.
func (p *Pool) Len() int { return len(p.conns) }

// Invoke makes a unary call on the next ClientConn with the raw codec, or
// over the direct transport (config.Upstream.DirectTransport).
func (p *Pool) Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error {
	if p.direct != nil {
		return p.invokeDirect(ctx, method, req, reply, opts...)
	}
	return p.Conn().Invoke(ctx, method, req, reply, opts...)
}

// Acquire takes a reference for one call. It returns false when the pool is
// retired: the caller reloads its routing table and tries again.
func (p *Pool) Acquire() bool { return p.refs.Acquire() }

// Release drops a reference taken by Acquire.
func (p *Pool) Release() { p.refs.Release() }

// Retire marks the pool as no longer routed to; it closes once the last
// in-flight call releases it (at once if none), in the background: Done
// tells when.
func (p *Pool) Retire() { p.refs.Retire() }

// Done is closed when the pool has closed.
func (p *Pool) Done() <-chan struct{} { return p.closed }

// Close closes every ClientConn now, failing calls in flight.
func (p *Pool) Close() error {
	p.refs.Closing()
	p.close()
	return nil
}

func (p *Pool) close() {
	defer p.watchWG.Wait() // the state watchers end with their ClientConns
	p.once.Do(func() {
		for _, c := range p.conns {
			_ = c.Close()
		}
		for _, d := range p.direct {
			d.Close()
		}
		if p.tls != nil {
			p.tls.Close()
		}
		if p.opts.Conns != nil {
			p.opts.Conns.Add(-float64(len(p.conns)))
		}
		if p.opts.Transports != nil {
			p.opts.Transports.Add(-float64(len(p.conns) * len(p.cfg.Endpoints)))
		}
		close(p.closed)
	})
}
