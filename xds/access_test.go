package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/meshgate/config"
)

// securePKI writes a CA, the control plane's certificate and client
// certificates for idc (DNS SAN idc), cloud (SPIFFE URI SAN) and a
// stranger, all signed by the CA, into dir.
func securePKI(t *testing.T, dir string) *xdstest.PKI {
	t.Helper()
	p := xdstest.NewPKI(t, dir, nil)
	for name, sans := range map[string][]string{
		"idc":      nil, // CN idc → DNS SAN idc
		"cloud":    {"spiffe://meshgate.test/ns/prod/sa/cloud"},
		"stranger": nil,
	} {
		p.Client(t, name, sans...)
	}
	return p
}

func secureConfig(t *testing.T, dir, addr string) *config.Config {
	t.Helper()
	return xdsConfig(t, dir, fmt.Sprintf(`  address: %s
  tls: {cert_file: xds.pem, key_file: xds-key.pem, ca_file: ca.pem}
  envoy:
  - node: idc
    listeners:
    - {name: in, address: 127.0.0.1:10000, protocol: private, route_to: {cluster: up}}
    clusters:
    - {name: up, protocol: private, endpoints: [127.0.0.1:10100], tls: {cert_file: idc.pem, key_file: idc-key.pem, ca_file: ca.pem}}
  - node: cloud
    identities: ["spiffe://meshgate.test/ns/prod/sa/cloud"]
    listeners:
    - {name: in, address: 127.0.0.1:10100, protocol: private, tls: {cert_file: cloud.pem, key_file: cloud-key.pem, ca_file: ca.pem}, route_to: {cluster: up}}
    clusters:
    - {name: up, protocol: private, endpoints: [127.0.0.1:7200]}
  proxyless_nodes: [{node: client-1}]
  grpc_clients:
  - {name: svc, endpoints: ["127.0.0.1:7201"]}
`, addr))
}

// secureServer serves the secure config on 127.0.0.1 and returns a dial
// function for ADS clients with the given credentials, and the PKI.
func secureServer(t *testing.T) (*Server, *prometheus.Registry, func(credentials.TransportCredentials) discovery.AggregatedDiscoveryServiceClient, *xdstest.PKI) {
	t.Helper()
	dir := t.TempDir()
	pki := securePKI(t, dir)
	reg := prometheus.NewRegistry()
	s, addr := serveForTest(t, secureConfig(t, dir, "127.0.0.1:0"), reg)
	dial := func(c credentials.TransportCredentials) discovery.AggregatedDiscoveryServiceClient {
		return adsClient(t, addr, c)
	}
	return s, reg, dial, pki
}

func refusedCount(reg *prometheus.Registry, reason string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "meshgate_xds_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestADSRequiresClientCertificate: without a client certificate the TLS
// handshake fails; nothing is served and the refusal is counted. A
// plaintext client gets nothing either.
func TestADSRequiresClientCertificate(t *testing.T) {
	_, reg, dial, pki := secureServer(t)
	for _, c := range []struct {
		name  string
		creds credentials.TransportCredentials
	}{{"tls without client cert", pki.Creds(t, "")}, {"plaintext", insecure.NewCredentials()}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := xdstest.FirstSecrets(ctx, dial(c.creds), "idc")
		cancel()
		if err == nil {
			t.Fatalf("%s: got a response: %v", c.name, r)
		}
		if code := status.Code(err); code != codes.Unavailable {
			t.Fatalf("%s: code %v (%v), want Unavailable (handshake failed)", c.name, code, err)
		}
	}
	// The server counts a failed handshake after the client saw it fail.
	testkit.Await(5*time.Second, func() bool { return refusedCount(reg, RefusedHandshake) >= 2 })
	if n := refusedCount(reg, RefusedHandshake); n < 2 {
		t.Fatalf("refused{handshake} = %v, want >= 2", n)
	}
}

// TestADSNodeIdentityBinding: a client with idc's certificate claiming
// cloud (whose secrets hold cloud's private key), or an undeclared node,
// is refused with PermissionDenied over SotW and delta; with its own node
// id it gets its own secrets.
func TestADSNodeIdentityBinding(t *testing.T) {
	s, reg, dial, pki := secureServer(t)
	idc := dial(pki.Creds(t, "idc"))
	stranger := dial(pki.Creds(t, "stranger"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, c := range []struct {
		name   string
		client discovery.AggregatedDiscoveryServiceClient
		node   string
		reason string
	}{
		{"idc claims cloud", idc, "cloud", RefusedIdentity},
		{"stranger claims idc", stranger, "idc", RefusedIdentity},
		{"idc claims undeclared node", idc, "whoever", RefusedUnknown},
		{"stranger claims proxyless client", stranger, "client-1", RefusedIdentity},
		{"empty node id", idc, "", RefusedNoNode},
	} {
		before := refusedCount(reg, c.reason)
		r, err := xdstest.FirstSecrets(ctx, c.client, c.node)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s (sotw): got %v / %v, want PermissionDenied", c.name, r, err)
		}
		d, err := xdstest.FirstDeltaSecrets(ctx, c.client, c.node)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s (delta): got %v / %v, want PermissionDenied", c.name, d, err)
		}
		if n := refusedCount(reg, c.reason); n != before+2 {
			t.Fatalf("%s: refused{%s} = %v, want %v", c.name, c.reason, n, before+2)
		}
	}

	// The rightful owners get their own secrets (and only theirs).
	r, err := xdstest.FirstSecrets(ctx, idc, "idc")
	if err != nil {
		t.Fatalf("idc as idc: %v", err)
	}
	idcSnap, _ := s.Snapshot("idc")
	if n := len(r.GetResources()); n == 0 || n != len(idcSnap.GetResources(resource.SecretType)) {
		t.Fatalf("idc got %d secrets, its snapshot has %d", n, len(idcSnap.GetResources(resource.SecretType)))
	}

	cloud := dial(pki.Creds(t, "cloud"))
	d, err := xdstest.FirstDeltaSecrets(ctx, cloud, "cloud")
	if err != nil {
		t.Fatalf("cloud as cloud (spiffe identity, delta): %v", err)
	}
	var names []string
	for _, res := range d.GetResources() {
		names = append(names, res.GetName())
	}
	if len(names) == 0 {
		t.Fatal("cloud got no secrets")
	}
	own, _ := s.Snapshot("cloud")
	if len(own.GetResources(resource.SecretType)) != len(names) {
		t.Fatalf("cloud got %v, snapshot has %d secrets", names, len(own.GetResources(resource.SecretType)))
	}
}

// TestUnixSocketMode: the ADS unix socket is created 0600 by default and
// with xds.socket_mode when set.
func TestUnixSocketMode(t *testing.T) {
	for _, c := range []struct {
		mode string
		want os.FileMode
	}{{"", 0o600}, {"0660", 0o660}} {
		dir := t.TempDir()
		path := filepath.Join(dir, "xds.sock")
		y := fmt.Sprintf("listeners: []\nupstreams: []\nxds:\n  address: unix:%s\n", path)
		if c.mode != "" {
			y += fmt.Sprintf("  socket_mode: %q\n", c.mode)
		}
		cfg, err := config.Parse([]byte(y), dir)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := listening(t, Options{}, cfg)
		st, err := os.Stat(path)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != c.want {
			t.Fatalf("socket_mode %q: mode %o, want %o", c.mode, got, c.want)
		}
	}
}

// TestADSServerCertificateRotation: replacing xds.tls files is picked up
// for new connections without a restart (grpc-go's pemfile provider).
func TestADSServerCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	ca := securePKI(t, dir).CA
	cfg := secureConfig(t, dir, "127.0.0.1:0")
	cfg.XDS.CertPoll = 50 * time.Millisecond
	_, addr := serveForTest(t, cfg, nil)
	client, err := tls.LoadX509KeyPair(filepath.Join(dir, "idc.pem"), filepath.Join(dir, "idc-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serial := func() (string, error) {
		c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{client}, NextProtos: []string{"h2"}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
	}
	old, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, _, err := ca.IssueFiles(dir, "xds")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Within(t, 5*time.Second, "the rotated certificate served", func() bool {
		got, err := serial()
		if err != nil {
			t.Fatal(err)
		}
		if got != old && got != leaf.Serial() {
			t.Fatalf("serving serial %s; old %s, rotated %s", got, old, leaf.Serial())
		}
		return got == leaf.Serial()
	})
}

// TestListenCloseWithoutServe: Listen with TLS then Close without Serve
// releases the certificate provider (goleak in TestMain checks).
func TestListenCloseWithoutServe(t *testing.T) {
	dir := t.TempDir()
	securePKI(t, dir)
	s, _ := listening(t, Options{}, secureConfig(t, dir, "127.0.0.1:0"))
	s.Close()
}

// TestListenRefusesUnusableTLSFiles: a missing xds.tls file fails Listen
// at once (the runtime reports it) instead of serving a listener whose
// handshakes all fail.
func TestListenRefusesUnusableTLSFiles(t *testing.T) {
	dir := t.TempDir()
	securePKI(t, dir)
	cfg := secureConfig(t, dir, "127.0.0.1:0")
	if err := os.Remove(filepath.Join(dir, "xds-key.pem")); err != nil {
		t.Fatal(err)
	}
	s := NewServer(Options{})
	defer s.Close()
	if err := s.Update(xdstest.Model(t, cfg)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Listen(); !errors.Is(err, ErrMissingFile) {
		t.Fatalf("Listen: %v, want ErrMissingFile", err)
	}
}

// TestADSNodeSwitchMidStream: a stream that opened as its own node and
// later names another node id is closed; it never gets the other's secrets.
func TestADSNodeSwitchMidStream(t *testing.T) {
	_, reg, dial, pki := secureServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := dial(pki.Creds(t, "idc")).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "idc"}, TypeUrl: resource.SecretType}); err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "cloud"}, TypeUrl: resource.SecretType,
		VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after switching to cloud: %v / %v, want PermissionDenied", r, err)
	}
	if n := refusedCount(reg, RefusedIdentity); n != 1 {
		t.Fatalf("refused{identity_mismatch} = %v", n)
	}
}

type countHandler struct{ n *atomic.Int64 }

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "refused") {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// TestRefusalsCountedLogRateLimited: every refusal is counted, but a flood
// logs once per reason per interval.
func TestRefusalsCountedLogRateLimited(t *testing.T) {
	var n atomic.Int64
	reg := prometheus.NewRegistry()
	s := NewServer(Options{Logger: slog.New(countHandler{&n}), Registerer: reg})
	defer s.Close()
	for i := 0; i < 1000; i++ {
		s.refuse(RefusedUnknown, "node", "x")
		s.refuse(RefusedIdentity, "node", "y")
	}
	if got := n.Load(); got != 2 {
		t.Fatalf("%d log lines for 2000 refusals, want 2 (one per reason)", got)
	}
	if c := refusedCount(reg, RefusedUnknown); c != 1000 {
		t.Fatalf("refused{unknown_node} = %v", c)
	}
}
