package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// xdsConfig parses a config of one gRPC listener and one private upstream
// with the given xds: section (its lines indented by two spaces); dir
// resolves relative file names.
func xdsConfig(t *testing.T, dir, section string) *config.Config {
	t.Helper()
	y := `
listeners:
- {name: grpc_in, kind: grpc, address: "127.0.0.1:7201", routes: [{method: "/a.B/*", cmd: 1, upstream: legacy}]}
upstreams:
- {name: legacy, protocol: private, endpoints: ["127.0.0.1:7100"]}
xds:
` + section
	cfg, err := config.Parse([]byte(y), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func proxylessConfig(t *testing.T, addr, endpoint string) *config.Config {
	t.Helper()
	return xdsConfig(t, "", fmt.Sprintf(`  address: %s
  insecure: true
  proxyless_nodes: [{node: client-1}, {node: delta-1}]
  grpc_clients:
  - {name: svc, endpoints: [%q]}
`, addr, endpoint))
}

// listening is a Server with opts, updated to cfg and listening.
func listening(t *testing.T, opts Options, cfg *config.Config) (*Server, net.Addr) {
	t.Helper()
	s := NewServer(opts)
	if err := s.Update(xdstest.Model(t, cfg)); err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	return s, addr
}

// serveForTest starts a Server on cfg; cleanup closes it and checks
// Serve's result.
func serveForTest(t *testing.T, cfg *config.Config, reg prometheus.Registerer) (*Server, net.Addr) {
	t.Helper()
	s, addr := listening(t, Options{Registerer: reg}, cfg)
	serveUntilCleanup(t, s)
	return s, addr
}

// serveUntilCleanup serves s until the test ends, then closes it and
// wants Serve to return nil.
func serveUntilCleanup(t *testing.T, s *Server) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

// adsClient is an ADS client of addr (TCP or unix) with creds, its
// connection closed at cleanup (before the server).
func adsClient(t *testing.T, addr net.Addr, creds credentials.TransportCredentials) discovery.AggregatedDiscoveryServiceClient {
	t.Helper()
	target := addr.String()
	if addr.Network() == "unix" {
		target = "unix://" + target
	}
	return xdstest.ADS(t, target, creds)
}

// startServer serves cfg and returns the server and a connected ADS stream.
func startServer(t *testing.T, cfg *config.Config, reg prometheus.Registerer) (*Server, discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient) {
	t.Helper()
	s, addr := serveForTest(t, cfg, reg)
	stream, err := adsClient(t, addr, insecure.NewCredentials()).StreamAggregatedResources(testkit.Context(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return s, stream
}

// responses reads a stream (its Recv) on one goroutine for the stream's life.
func responses[R any](recv func() (R, error)) <-chan R {
	ch := make(chan R, 16)
	go func() {
		defer close(ch)
		for {
			r, err := recv()
			if err != nil {
				return
			}
			ch <- r
		}
	}()
	return ch
}

func recvTimeout[R any](ch <-chan R, d time.Duration) (R, error) {
	var zero R
	select {
	case r, ok := <-ch:
		if !ok {
			return zero, errors.New("stream ended")
		}
		return r, nil
	case <-time.After(d):
		return zero, errTimeout
	}
}

// nackCleared waits until no client's NACK is outstanding.
func nackCleared(t *testing.T, s *Server) {
	t.Helper()
	testkit.Succeeds(t, testkit.Context(t, 5*time.Second), 10*time.Millisecond, func() error { return s.nackError(nil) }, "NACK not cleared")
}

var errTimeout = errors.New("no response")

// TestNackNotResentAndReported: a client NACKs a version; the server logs
// and counts it once, reports it through NackCheck, does not answer with
// the same version again, and clears it when a newer version is ACKed.
func TestNackNotResentAndReported(t *testing.T) {
	reg := prometheus.NewRegistry()
	sock := filepath.Join(t.TempDir(), "xds.sock")
	cfg := proxylessConfig(t, "unix:"+sock, "127.0.0.1:7201")
	s, stream := startServer(t, cfg, reg)
	node := &core.Node{Id: "client-1"}
	in := responses(stream.Recv)
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r1, err := recvTimeout(in, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r1.VersionInfo != s.Version() || len(r1.Resources) != 1 {
		t.Fatalf("first response version %q (server %q), %d resources", r1.VersionInfo, s.Version(), len(r1.Resources))
	}
	// NACK it.
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r1.Nonce,
		ErrorDetail: &status.Status{Code: 3, Message: "bad cluster"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := recvTimeout(in, 500*time.Millisecond); !errors.Is(err, errTimeout) {
		t.Fatalf("after NACK the server answered %v %v (re-send loop)", r, err)
	}
	err = s.nackError(nil)
	if !errors.Is(err, ErrNack) || !strings.Contains(err.Error(), "client-1") || !strings.Contains(err.Error(), "bad cluster") {
		t.Fatalf("NACK report = %v", err)
	}
	// client-1 is a proxyless client: its NACK does not fail readiness.
	if err := s.NackCheck(); err != nil {
		t.Fatalf("NackCheck after a proxyless client's NACK = %v, want nil", err)
	}
	if n := testutil.ToFloat64(s.nackTotal.WithLabelValues(resource.ClusterType)); n != 1 {
		t.Fatalf("nacks_total = %v", n)
	}
	// A new config: new version sent; its ACK clears the NACK.
	old := s.Version()
	if err := s.Update(xdstest.Model(t, proxylessConfig(t, "unix:"+sock, "127.0.0.1:7202"))); err != nil {
		t.Fatal(err)
	}
	r2, err := recvTimeout(in, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r2.VersionInfo == old || r2.VersionInfo != s.Version() {
		t.Fatalf("second version %q, old %q", r2.VersionInfo, old)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r2.Nonce, VersionInfo: r2.VersionInfo}); err != nil {
		t.Fatal(err)
	}
	nackCleared(t, s)
	if v := s.AckedVersion("client-1", resource.ClusterType); v != r2.VersionInfo {
		t.Fatalf("acked %q", v)
	}
}

// TestVersionsFreshAcrossRestarts: two servers (a restart) never produce
// the same version, and every Update gets a new one.
func TestVersionsFreshAcrossRestarts(t *testing.T) {
	cfg := proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201")
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		s := NewServer(Options{})
		for j := 0; j < 3; j++ {
			if err := s.Update(xdstest.Model(t, cfg)); err != nil {
				t.Fatal(err)
			}
			if seen[s.Version()] {
				t.Fatalf("version %s reused", s.Version())
			}
			seen[s.Version()] = true
		}
		s.Close()
		time.Sleep(time.Microsecond)
	}
}

func TestUpdateRejectsMissingCertFile(t *testing.T) {
	m := loadTestModel(t, "bridge.yaml") // its certs/ files do not exist
	s := NewServer(Options{})
	defer s.Close()
	if err := s.Update(m); !errors.Is(err, ErrMissingFile) {
		t.Fatalf("err = %v", err)
	}
	if s.Version() != "" {
		t.Fatal("a snapshot was set")
	}
}

func TestListenTCPAndClose(t *testing.T) {
	if _, err := NewServer(Options{Address: "127.0.0.1:0"}).Listen(); err == nil {
		t.Fatal("plaintext TCP listen without a config (no xds.insecure) succeeded")
	}
	s, addr := listening(t, Options{Address: "127.0.0.1:0"}, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"))
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Close()
	err = testkit.Receive(t, done, 5*time.Second, "Serve did not return after Close")
	if err != nil && !errors.Is(err, ErrClosed) { // ErrClosed: closed before Serve got going
		t.Fatal(err)
	}
}

// TestDeltaNack: the same over an incremental (delta) ADS stream.
func TestDeltaNack(t *testing.T) {
	s, addr := serveForTest(t, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"), nil)
	stream, err := adsClient(t, addr, insecure.NewCredentials()).DeltaAggregatedResources(testkit.Context(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	in := responses(stream.Recv)
	recv := func(d time.Duration) *discovery.DeltaDiscoveryResponse {
		r, _ := recvTimeout(in, d)
		return r
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "delta-1"}, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	r1 := recv(5 * time.Second)
	if r1 == nil || len(r1.Resources) != 1 {
		t.Fatalf("first delta response %v", r1)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r1.Nonce,
		ErrorDetail: &status.Status{Code: 3, Message: "nope"}}); err != nil {
		t.Fatal(err)
	}
	if r := recv(500 * time.Millisecond); r != nil {
		t.Fatalf("re-sent after NACK: %v", r)
	}
	if err := s.nackError(nil); !errors.Is(err, ErrNack) || !strings.Contains(err.Error(), "delta-1") {
		t.Fatalf("NACK report = %v", err)
	}
	// A new cluster is sent; its ACK clears the NACK.
	cfg2 := proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201")
	cfg2.XDS.GRPCClients = append(cfg2.XDS.GRPCClients, config.GRPCClient{Name: "svc2", Endpoints: []string{"127.0.0.1:7203"}})
	if err := s.Update(xdstest.Model(t, cfg2)); err != nil {
		t.Fatal(err)
	}
	r2 := recv(5 * time.Second)
	if r2 == nil {
		t.Fatal("no delta response after update")
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r2.Nonce}); err != nil {
		t.Fatal(err)
	}
	nackCleared(t, s)
	if v := s.AckedVersion("delta-1", resource.ClusterType); v == "" || !s.newer(v, r1.SystemVersionInfo) {
		t.Fatalf("acked %q after rejecting %q", v, r1.SystemVersionInfo)
	}
}

// TestRecheckSkipsHalfRotatedKeyPair: a rotation caught between writing
// the key and writing the certificate is not published (Envoy would NACK
// the mismatched secret); the next poll, with both files new, is.
func TestRecheckSkipsHalfRotatedKeyPair(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "bridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bridge.yaml"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, _, err := testpki.WriteSet(certs, "idc", "cloud")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "bridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Options{})
	defer s.Close()
	if err := s.Update(xdstest.Model(t, cfg)); err != nil {
		t.Fatal(err)
	}
	v := s.Version()
	next, err := ca.IssueLeaf("idc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "idc-key.pem"), next.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.RecheckFiles(); changed || !errors.Is(err, ErrKeyPair) {
		t.Fatalf("half-rotated pair: changed=%v err=%v, want ErrKeyPair and nothing pushed", changed, err)
	}
	if s.Version() != v {
		t.Fatalf("version moved to %s on a mismatched pair", s.Version())
	}
	if err := os.WriteFile(filepath.Join(certs, "idc.pem"), next.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.RecheckFiles(); !changed || err != nil {
		t.Fatalf("completed rotation: changed=%v err=%v", changed, err)
	}
}
