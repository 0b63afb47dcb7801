package harness

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// Listen binds a loopback TCP port chosen by the kernel; the listener is
// closed when the test ends. Peers started in the test process serve on it
// directly, so no port is ever released and re-bound.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// ServeGRPC serves gs on a new loopback port until the test ends and
// returns the address.
func ServeGRPC(t testing.TB, gs *grpc.Server) string {
	t.Helper()
	ln := Listen(t)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// DemoServer serves the demo.Echo gRPC service until the test ends and
// returns its address.
func DemoServer(t testing.TB) string {
	t.Helper()
	return ServeGRPC(t, demo.NewServer())
}

// InteropServer serves grpc-go's interop TestService until the test ends
// and returns its address.
func InteropServer(t testing.TB) string {
	t.Helper()
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, interop.NewTestServer())
	return ServeGRPC(t, gs)
}

// LegacyServer serves the reference legacy private-protocol server with
// opts until the test ends and returns its address.
func LegacyServer(t testing.TB, opts legacy.ServerOptions) string {
	t.Helper()
	ln := Listen(t)
	ls := legacy.NewServer(opts)
	go func() { _ = ls.Serve(ln) }()
	t.Cleanup(func() { _ = ls.Close() })
	return ln.Addr().String()
}

// RawCodec makes a client send and receive message bytes as they are
// (rawcodec), as MeshGate's own gRPC side does.
func RawCodec() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{}))
}

// DialGRPC returns a client for addr, plaintext unless opts set other
// transport credentials (later options win); it is closed when the test
// ends.
func DialGRPC(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// ClientCert is mutual TLS towards a server with a certificate for
// "localhost" from ca: the client presents a leaf ca issues for id (a URI
// SAN such as a SPIFFE ID, or a DNS name).
func ClientCert(t testing.TB, ca *testpki.CA, id string) grpc.DialOption {
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

// DialLegacy connects the reference legacy client to addr (within 10s);
// it is closed when the test ends.
func DialLegacy(t testing.TB, addr string, opts legacy.ClientOptions) *legacy.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := legacy.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}
