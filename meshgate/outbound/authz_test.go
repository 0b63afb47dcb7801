package outbound_test

import (
	"context"
	"crypto/tls"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

const (
	webID   = "spiffe://meshgate.test/ns/game/sa/web"
	batchID = "dns:batch.game.internal"
)

var testPolicy = &config.Authz{Allow: []config.AuthzRule{
	{Identities: []string{webID}, Methods: []string{"/test.Echo/Echo", "/test.Upper/*"}},
	{Identities: []string{batchID}, Methods: []string{"/test.Echo/*"}},
}}

// authzEnv is the real outbound server behind mTLS (server config from
// grpcpool.ServerTLS, as the runtime builds it) in front of a real legacy
// backend that counts what reaches it.
type authzEnv struct {
	addr    string
	ca      *testpki.CA
	reg     *prometheus.Registry
	backend *atomic.Int64
}

func newAuthzEnv(t *testing.T, mtls bool, policy *config.Authz) *authzEnv {
	t.Helper()
	_, ca, files := testkit.PKI(t, "meshgate")
	m := admin.NewMetrics()
	e := &authzEnv{ca: ca, reg: m.Registry, backend: new(atomic.Int64)}
	_, addr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(*codec.Frame) { e.backend.Add(1) }})
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{addr}, LB: config.LBRoundRobin, Connections: 1}
	p := pooltest.Private(t, u.WithDefaults(), e.reg, 1)
	out, err := outbound.New(outbound.Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	l := listener(defaultRoutes...)
	l.Authz = policy
	if err := out.Update(l, upstream.Set{Private: map[string]*upstream.PrivatePool{"legacy": p}}); err != nil {
		t.Fatal(err)
	}
	opts := out.ServerOptions()
	if mtls {
		opts = append(opts, grpc.Creds(testkit.TLSServer(t, files["meshgate"], 0).Credentials()))
	}
	e.addr = testkit.Serve(t, grpc.NewServer(opts...), nil)
	return e
}

// client dials with a client certificate carrying names (URI SAN when it
// contains "://", DNS SAN otherwise); no names = insecure (no TLS).
func (e *authzEnv) client(t *testing.T, names ...string) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if len(names) > 0 {
		leaf, err := e.ca.IssueLeaf("client", names...)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: e.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	}
	return testkit.Client(t, e.addr, grpc.WithTransportCredentials(creds))
}

func call(t *testing.T, cc *grpc.ClientConn, method string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var out []byte
	return status.Code(cc.Invoke(ctx, method, []byte("hi"), &out))
}

// TestAuthorizeMTLSPeer: over real mTLS, a client's SPIFFE URI SAN or DNS
// SAN decides which methods it may call; everything else is
// PERMISSION_DENIED, counted, and never reaches the backend.
func TestAuthorizeMTLSPeer(t *testing.T) {
	e := newAuthzEnv(t, true, testPolicy)
	web := e.client(t, webID)
	batch := e.client(t, "Batch.Game.Internal") // DNS names are case-insensitive
	other := e.client(t, "spiffe://meshgate.test/ns/game/sa/other", "other.game.internal")
	allowed := 0
	for _, tc := range []struct {
		name   string
		cc     *grpc.ClientConn
		method string
		want   codes.Code
	}{
		{"web exact", web, "/test.Echo/Echo", codes.OK},
		{"web service wildcard", web, "/test.Upper/Anything", codes.OK},
		{"web not granted", web, "/test.Echo/Fail", codes.PermissionDenied},
		{"web unrouted", web, "/test.Nope/Echo", codes.PermissionDenied},
		{"batch wildcard", batch, "/test.Echo/Echo", codes.OK},
		{"batch routed upstream error", batch, "/test.Echo/Missing", codes.Unimplemented},
		{"batch other service", batch, "/test.Upper/X", codes.PermissionDenied},
		{"unknown identity", other, "/test.Echo/Echo", codes.PermissionDenied},
	} {
		if got := call(t, tc.cc, tc.method); got != tc.want {
			t.Errorf("%s: %s = %v, want %v", tc.name, tc.method, got, tc.want)
		}
		if tc.want != codes.PermissionDenied {
			allowed++
		}
	}
	if n := e.backend.Load(); n != int64(allowed) {
		t.Fatalf("backend saw %d requests, want %d (only the allowed ones)", n, allowed)
	}
	if n := testutil.ToFloat64(authz.Failures(e.reg).WithLabelValues("grpc-in", authz.ReasonForbidden)); n != 4 {
		t.Fatalf("forbidden failures %v, want 4", n)
	}
}

// TestAuthorizeWithoutPeerCert: a policy on a listener whose calls carry no
// verified certificate (config validation prevents it) denies everything.
func TestAuthorizeWithoutPeerCert(t *testing.T) {
	e := newAuthzEnv(t, false, testPolicy)
	if got := call(t, e.client(t), "/test.Echo/Echo"); got != codes.PermissionDenied {
		t.Fatalf("no certificate: %v", got)
	}
	if n := e.backend.Load(); n != 0 {
		t.Fatalf("backend saw %d requests", n)
	}
	if n := testutil.ToFloat64(authz.Failures(e.reg).WithLabelValues("grpc-in", authz.ReasonNoIdentity)); n != 1 {
		t.Fatalf("no_identity failures %v", n)
	}
	// Without a policy the same call goes through.
	e2 := newAuthzEnv(t, false, nil)
	if got := call(t, e2.client(t), "/test.Echo/Echo"); got != codes.OK {
		t.Fatalf("no policy: %v", got)
	}
}
