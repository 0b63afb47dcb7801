package grpcpool

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

func directUpstream(eps []string, lb string, conns int) config.Upstream {
	return config.Upstream{Name: "u", Protocol: config.ProtoGRPC, Endpoints: eps, LB: lb, Connections: conns,
		GRPCTransport: config.GRPCTransportDirect, ReconnectBackoffMax: 50 * time.Millisecond}
}

// TestDirectPolicies: with grpc_transport direct, unary calls go over the
// direct transport (no grpc-go ClientConn connects) and are balanced by
// the Guard like grpc-go's: every policy spreads, consistent hashing
// sticks.
func TestDirectPolicies(t *testing.T) {
	eps := []string{backend(t, "a"), backend(t, "b"), backend(t, "c")}
	for _, lb := range []string{config.LBRoundRobin, config.LBLeastRequest, config.LBConsistentHash} {
		t.Run(lb, func(t *testing.T) {
			p := newPool(t, directUpstream(eps, lb, 2))
			if len(p.direct) != 3 {
				t.Fatalf("%d direct endpoints", len(p.direct))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			waitAllConnected(t, p)
			seen := map[string]int{}
			if lb == config.LBConsistentHash {
				for uin := uint64(1); uin <= 60; uin++ {
					first := who(t, p, uin)
					for range 4 {
						if got := who(t, p, uin); got != first {
							t.Fatalf("uin %d: %s then %s", uin, first, got)
						}
					}
					seen[first]++
				}
			} else {
				for range 90 {
					seen[who(t, p, 0)]++
				}
			}
			if len(seen) != 3 {
				t.Fatalf("%s spread: %v", lb, seen)
			}
			for _, ep := range p.Guard().Endpoints() {
				if ep.Latency() == 0 {
					t.Errorf("endpoint %s: no outcome recorded", ep.Addr())
				}
			}
			for i, cc := range p.conns {
				if s := cc.GetState().String(); s != "IDLE" {
					t.Errorf("grpc-go ClientConn %d is %s: unary calls went through grpc-go", i, s)
				}
			}
		})
	}
}

// TestDirectGuardedCall: a call carrying the Guard's endpoint goes to that
// endpoint; an endpoint without a connection fails as a connect failure
// (the Guard then tries another).
func TestDirectGuardedCall(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close() // nothing listens there
	eps := []string{backend(t, "a"), downAddr}
	p := newPool(t, directUpstream(eps, config.LBRoundRobin, 1))
	g := p.Guard()
	var out []byte
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Invoke(resilience.WithEndpoint(ctx, g.Endpoints()[0]), "/test.Svc/Who", []byte{}, &out); err != nil || string(out) != "a" {
		t.Fatalf("guarded call: %q %v", out, err)
	}
	testkit.Within(t, 10*time.Second, "the down endpoint to fail its dial", func() bool { return p.direct[1].LastError() != nil })
	err = p.Invoke(resilience.WithEndpoint(ctx, g.Endpoints()[1]), "/test.Svc/Who", []byte{}, &out)
	if o := resilience.ClassifyGRPC(ctx, err); o != resilience.ConnectFailure {
		t.Fatalf("call to an unconnected endpoint: %v classified %v, want ConnectFailure", err, o)
	}
	// Unguarded calls skip the endpoint without a connection.
	for range 10 {
		if got := who(t, p, 0); got != "a" {
			t.Fatalf("unguarded call went to %q", got)
		}
	}
	if p.Ready() != true {
		t.Fatal("pool not ready with one endpoint connected")
	}
}

// TestDirectRetire: a retired direct pool serves its last call, then
// closes its connections (goleak checks their goroutines ended).
func TestDirectRetire(t *testing.T) {
	p, err := New(directUpstream([]string{backend(t, "a")}, config.LBRoundRobin, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Acquire() {
		t.Fatal("acquire")
	}
	p.Retire()
	if who(t, p, 0) != "a" {
		t.Fatal("call on retired pool failed")
	}
	select {
	case <-p.Done():
		t.Fatal("closed with a call in flight")
	default:
	}
	p.Release()
	testkit.Receive(t, p.Done(), 5*time.Second, "not closed after last release")
	var out []byte
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.Invoke(ctx, "/test.Svc/Who", []byte{}, &out); status.Code(err) != codes.Unavailable {
		t.Fatalf("call on a closed pool: %v", err)
	}
}

// TestDirectGracefulStopFailover: one endpoint's server stops gracefully
// with calls in flight: they finish, and new calls go to the other
// endpoint.
func TestDirectGracefulStopFailover(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(demo.ServerOptions()...)
	demo.RegisterRaw(gs, "test.Svc", map[string]demo.Handler{"Who": func(context.Context, []byte) ([]byte, error) {
		held.Add(1)
		<-release
		return []byte("stopping"), nil
	}})
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	p, err := New(directUpstream([]string{ln.Addr().String(), backend(t, "b")}, config.LBRoundRobin, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g := p.Guard()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			var out []byte
			if err := p.Invoke(resilience.WithEndpoint(ctx, g.Endpoints()[0]), "/test.Svc/Who", []byte{}, &out); err != nil || string(out) != "stopping" {
				t.Errorf("in-flight call: %q %v", out, err)
			}
		})
	}
	testkit.Within(t, 10*time.Second, "2 calls in flight", func() bool { return held.Load() == 2 })
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	testkit.Within(t, 10*time.Second, "endpoint 0 to stop taking calls", func() bool { return !p.direct[0].AnyReady() })
	for range 10 {
		if got := who(t, p, 0); got != "b" {
			t.Fatalf("new call went to %q", got)
		}
	}
	close(release)
	wg.Wait()
	<-stopped
}

// TestDirectTLS: mTLS from tlsconf's client config; a client trusting
// another CA fails Unavailable.
func TestDirectTLS(t *testing.T) {
	_, _, files := testkit.PKI(t, "server", "client")
	cf := files["client"]
	srvTLS := testkit.TLSServer(t, files["server"], 0)
	var accepts atomic.Int64
	ep, _ := tlsBackend(t, "127.0.0.1:0", "tls", srvTLS, &accepts)
	u := directUpstream([]string{ep}, config.LBRoundRobin, 1)
	u.TLS = &config.TLS{CertFile: cf.CertFile, KeyFile: cf.KeyFile, CAFile: cf.CAFile, ServerName: "localhost"}
	p := newPool(t, u)
	if who(t, p, 0) != "tls" {
		t.Fatal("tls call")
	}
	_, _, other := testkit.PKI(t, "client")
	u.TLS = &config.TLS{CertFile: other["client"].CertFile, KeyFile: other["client"].KeyFile, CAFile: other["client"].CAFile, ServerName: "localhost"}
	q := newPool(t, u)
	testkit.Within(t, 10*time.Second, "the wrong-CA handshake to fail", func() bool { return q.direct[0].LastError() != nil })
	var out []byte
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := q.Invoke(ctx, "/test.Svc/Who", []byte{}, &out); status.Code(err) != codes.Unavailable {
		t.Fatalf("wrong CA: %v", err)
	}
	if q.Ready() {
		t.Fatal("ready without a verified connection")
	}
}

// TestDirectAuthority: both transports send the same :authority (the
// upstream's name) and verify an upstream certificate against it when tls
// has no server_name.
func TestDirectAuthority(t *testing.T) {
	_, _, files := testkit.PKI(t, "user-svc")
	sf := files["user-svc"]
	sf.CAFile = "" // no client certificates asked
	addr := (&testkit.Stub{Options: []grpc.ServerOption{grpc.Creds(testkit.TLSServer(t, sf, 0).Credentials())},
		Services: map[string]map[string]demo.Handler{"test.Svc": {"Who": func(ctx context.Context, _ []byte) ([]byte, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			return []byte(strings.Join(md.Get(":authority"), ",")), nil
		}}}}).Start(t)
	for _, transport := range []string{config.GRPCTransportGRPCGo, config.GRPCTransportDirect} {
		u := directUpstream([]string{addr}, config.LBRoundRobin, 1)
		u.Name, u.GRPCTransport = "user-svc", transport
		u.TLS = &config.TLS{CAFile: files["user-svc"].CAFile}
		p, err := New(u, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := who(t, p, 0); got != "user-svc" {
			t.Errorf("%s: server saw :authority %q, want the upstream name", transport, got)
		}
		p.Close()
	}
}
