package e2e

// Peers and clients of e2e's own (grpc-go's interop server, mTLS client
// credentials, the legacy client) and Envoy's bound listener address; the
// common ones (demo and legacy servers and clients, gRPC clients, PKI) are
// internal/testkit's, as in the unit tests. They live here rather than in
// harness so that harness, which deploy/e2e imports too, stays free of
// gRPC, Envoy and MeshGate dependencies.

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
)

// interopServer serves grpc-go's interop TestService until the test ends
// and returns its address.
func interopServer(t testing.TB) string {
	t.Helper()
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, interop.NewTestServer())
	return testkit.Serve(t, gs, nil)
}

// clientCert is mutual TLS towards a server with a certificate for
// "localhost" from ca: the client presents a leaf ca issues for id (a URI
// SAN such as a SPIFFE ID, or a DNS name).
func clientCert(t testing.TB, ca *testpki.CA, id string) grpc.DialOption {
	t.Helper()
	leaf, err := ca.IssueLeaf("client", id)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
	}))
}

// envoyAdmin is what EnvoyListener needs of a running Envoy
// (*envoyproc.Envoy).
type envoyAdmin interface {
	AdminGet(path string) ([]byte, error)
}

// envoyListener waits until Envoy's listener name is bound and returns its
// host:port, read from the admin's /listeners?format=json: a bootstrap may
// then put the listener on port 0.
func envoyListener(t testing.TB, env envoyAdmin, name string) string {
	t.Helper()
	var addr string
	harness.Eventually(t, 20*time.Second, "Envoy listener "+name+" bound", func() error {
		b, err := env.AdminGet("/listeners?format=json")
		if err != nil {
			return err
		}
		var ls adminv3.Listeners
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &ls); err != nil {
			return fmt.Errorf("/listeners: %w", err)
		}
		for _, l := range ls.GetListenerStatuses() {
			sa := l.GetLocalAddress().GetSocketAddress()
			if l.GetName() == name && sa.GetPortValue() != 0 {
				addr = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
				return nil
			}
		}
		return fmt.Errorf("not listed yet: %s", b)
	})
	return addr
}

// inFlightDoneExit0 waits for the requests a drain test had in flight
// (wg, their errors in errs), reports every one that failed, and wants
// the process to exit 0.
func inFlightDoneExit0(t *testing.T, p *harness.Proc, wg *sync.WaitGroup, errs chan error) {
	t.Helper()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("in-flight request: %v", err)
	}
	if code := p.Exited(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}
