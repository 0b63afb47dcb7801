package grpcpool

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func backend(t *testing.T, name string, opts ...grpc.ServerOption) string {
	t.Helper()
	return testkit.Who(t, name, opts...)
}

// newPool is New(u) without options, closed at cleanup.
func newPool(t *testing.T, u config.Upstream) *Pool {
	t.Helper()
	p, err := New(u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func who(t *testing.T, p *Pool, uin uint64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if uin != 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, HashHeader, strconv.FormatUint(uin, 10))
	}
	var out []byte
	if err := p.Invoke(ctx, "/test.Svc/Who", []byte{}, &out); err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestPolicies(t *testing.T) {
	eps := []string{backend(t, "a"), backend(t, "b"), backend(t, "c")}
	for _, lb := range []string{config.LBRoundRobin, config.LBLeastRequest, config.LBConsistentHash} {
		t.Run(lb, func(t *testing.T) {
			p := newPool(t, config.Upstream{Name: "u", Protocol: "grpc", Endpoints: eps, LB: lb, Connections: 2})
			if p.Len() != 2 {
				t.Fatalf("%d ClientConns", p.Len())
			}
			waitAllConnected(t, p)
			seen := map[string]int{}
			if lb == config.LBConsistentHash {
				// Same uin → same backend, always, on either ClientConn.
				for uin := uint64(1); uin <= 60; uin++ {
					first := who(t, p, uin)
					for i := 0; i < 4; i++ {
						if got := who(t, p, uin); got != first {
							t.Fatalf("uin %d: %s then %s", uin, first, got)
						}
					}
					seen[first]++
				}
			} else {
				for i := 0; i < 90; i++ {
					seen[who(t, p, 0)]++
				}
			}
			if len(seen) != 3 {
				t.Fatalf("%s spread: %v", lb, seen)
			}
		})
	}
}

func TestRetireWaitsForLastCall(t *testing.T) {
	p, err := New(config.Upstream{Name: "u", Protocol: "grpc", Endpoints: []string{backend(t, "a")}, LB: "round_robin", Connections: 1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Acquire() {
		t.Fatal("acquire")
	}
	p.Retire()
	select {
	case <-p.Done():
		t.Fatal("closed with a call in flight")
	default:
	}
	if who(t, p, 0) != "a" {
		t.Fatal("call on retired pool failed")
	}
	if p.Acquire() {
		t.Fatal("acquire after retire")
	}
	p.Release() // closes in the background
	testkit.Receive(t, p.Done(), 5*time.Second, "not closed after last release")
}

func TestSame(t *testing.T) {
	u := config.Upstream{Name: "u", Protocol: "grpc", Endpoints: []string{"127.0.0.1:1"}, LB: "round_robin", Connections: 2}
	p := newPool(t, u)
	if !p.Same(u) {
		t.Fatal("same config differs")
	}
	v := u
	v.Endpoints = []string{"127.0.0.1:2"}
	w := u
	w.LB = "least_request"
	x := u // switching grpc_transport rebuilds the pool on reload
	x.GRPCTransport = config.GRPCTransportGRPCGo
	if p.Same(v) || p.Same(w) || p.Same(x) {
		t.Fatal("changed config reported same")
	}
	y := u // naming the default changes nothing
	y.GRPCTransport = config.GRPCTransportDirect
	if !p.Same(y) {
		t.Fatal("grpc_transport: direct differs from the default")
	}
	if _, err := New(config.Upstream{Name: "x", Protocol: "private"}, Options{}); err == nil {
		t.Fatal("private upstream accepted")
	}
}

func TestTLS(t *testing.T) {
	dir, _, files := testkit.PKI(t, "backend.test")
	srv := files["backend.test"]
	srv.CAFile = "" // no client certificates asked
	ep := backend(t, "tls", grpc.Creds(testkit.TLSServer(t, srv, 0).Credentials()))
	u := config.Upstream{Name: "u", Protocol: "grpc", Endpoints: []string{ep}, LB: "round_robin", Connections: 1,
		TLS: &config.TLS{CAFile: files["backend.test"].CAFile, ServerName: "backend.test"}}
	p := newPool(t, u)
	if who(t, p, 0) != "tls" {
		t.Fatal("tls call")
	}
	// Wrong server name: the handshake fails.
	u.TLS = &config.TLS{CAFile: files["backend.test"].CAFile, ServerName: "other.test"}
	q := newPool(t, u)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out []byte
	if err := q.Invoke(ctx, "/test.Svc/Who", []byte{}, &out); err == nil {
		t.Fatal("wrong server name accepted")
	}
	u.TLS = &config.TLS{CAFile: filepath.Join(dir, "missing.pem")}
	if _, err := New(u, Options{}); err == nil {
		t.Fatal("missing CA accepted")
	}
}

// waitAllConnected waits (bounded) until every endpoint answers on every
// ClientConn: consistent hashing moves a user to the next endpoint while
// its own is still connecting.
func waitAllConnected(t *testing.T, p *Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, ep := range p.Guard().Endpoints() {
		for ok := 0; ok < 2*p.Len(); {
			var out []byte
			if err := p.Invoke(resilience.WithEndpoint(ctx, ep), "/test.Svc/Who", []byte{}, &out); err != nil {
				ok = 0
				if ctx.Err() != nil {
					t.Fatalf("%s never connected on every ClientConn: %v", ep.Addr(), err)
				}
				time.Sleep(2 * time.Millisecond)
				continue
			}
			ok++
		}
	}
}
