package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
)

// xdsConfig is yamlConfig with a plaintext xds section on a free port;
// body adds to that section (two-space indented lines).
func xdsConfig(grpcEP, body string) string {
	return yamlConfig(grpcEP, "") + "\nxds:\n  address: 127.0.0.1:0\n  insecure: true\n" + body
}

// TestXDSWiring: an xds section starts the control plane with the runtime,
// every reload pushes a new snapshot version, readiness includes the xds
// check, and dropping the section stops it.
func TestXDSWiring(t *testing.T) {
	grpcEP := backend(t, "A")
	withXDS := func(ep string) string {
		return xdsConfig(grpcEP, fmt.Sprintf("  grpc_clients:\n  - {name: svc, endpoints: [%q]}\n", ep))
	}
	rt := start(t, mustParse(t, withXDS("127.0.0.1:7001")))
	xs := rt.XDS()
	if xs == nil || xs.Addr() == nil {
		t.Fatal("control plane not started")
	}
	v1 := xs.Version()
	if err := rt.Admin().Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if err := rt.Reload(mustParse(t, withXDS("127.0.0.1:7002"))); err != nil {
		t.Fatal(err)
	}
	if v2 := rt.XDS().Version(); v2 == v1 || v2 == "" {
		t.Fatalf("reload did not push a new version: %q → %q", v1, v2)
	}
	if err := rt.Reload(mustParse(t, yamlConfig(grpcEP, ""))); err != nil {
		t.Fatal(err)
	}
	if rt.XDS() != nil {
		t.Fatal("control plane still running without an xds section")
	}
	if err := rt.Admin().Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
}

// TestReadinessAnswersDuringSlowXDSPush: an Envoy node that takes a
// snapshot and never ACKs makes the next push wait (bounded) for its ACK;
// meanwhile /readyz and /config answer at once (the runtime holds no lock
// readiness needs across the wait).
func TestReadinessAnswersDuringSlowXDSPush(t *testing.T) {
	grpcEP := backend(t, "A")
	withXDS := func(cluster string) string {
		return xdsConfig(grpcEP, fmt.Sprintf(`
  envoy:
  - node: slow
    listeners:
    - {name: l, address: 127.0.0.1:7301, protocol: grpc, route_to: {cluster: %[1]s}}
    clusters:
    - {name: %[1]s, protocol: grpc, endpoints: [127.0.0.1:7001]}
`, cluster))
	}
	rt := start(t, mustParse(t, withXDS("c1")))
	cc := testkit.Dial(t, rt.XDS().Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = grpcEP
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Subscribe to clusters, take the first response, never ACK.
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "slow", Cluster: "slow"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("first snapshot: %v", err)
	}
	go func() { // drain later pushes without ACKing them
		for {
			if _, err := st.Recv(); err != nil {
				return
			}
		}
	}()
	// A reload that replaces the node's cluster pushes make-before-break
	// phases, each waiting (up to 5s) for the node's ACK.
	reloaded := make(chan error, 1)
	next := mustParse(t, withXDS("c2"))
	go func() { reloaded <- rt.Reload(next) }()
	// While it waits, readiness and /config answer promptly.
	begin := time.Now()
	waitPushing := time.After(300 * time.Millisecond) // let the push reach its ACK wait
	select {
	case err := <-reloaded:
		t.Fatalf("reload returned before the ACK wait (%v): the node's subscription was not counted", err)
	case <-waitPushing:
	}
	ready := make(chan error, 1)
	go func() { ready <- rt.Admin().Ready() }()
	testkit.Receive(t, ready, time.Second, "/readyz blocked behind an xDS push waiting for ACKs")
	if v := rt.configView(); v == nil {
		t.Fatal("/config view empty")
	}
	cancel() // the node goes away: the push stops waiting after this phase
	if err := <-reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
	t.Logf("push waited %v for the missing ACK", time.Since(begin).Round(time.Millisecond))
}

// TestXDSReloadToTLSRestartsPlane: a reload that adds xds.tls restarts the
// control plane on a mutual-TLS listener (Update alone would keep serving
// plaintext): a client without a certificate is refused, one with a
// certificate of the CA completes the handshake.
func TestXDSReloadToTLSRestartsPlane(t *testing.T) {
	_, ca, files := testkit.PKI(t, "xds", "client")
	grpcEP := backend(t, "A")
	plain := xdsConfig(grpcEP, "")
	withTLS := yamlConfig(grpcEP, "") + fmt.Sprintf("\nxds:\n  address: 127.0.0.1:0\n  tls: %s\n", files["xds"].YAML())
	rt := start(t, mustParse(t, plain))
	before := rt.XDS()
	if err := rt.Reload(mustParse(t, withTLS)); err != nil {
		t.Fatal(err)
	}
	xs := rt.XDS()
	if xs == nil || xs == before {
		t.Fatal("control plane not restarted for the new TLS settings")
	}
	handshake := func(cert *tls.Certificate) error {
		c, err := net.DialTimeout("tcp", xs.Addr().String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"h2"}}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		conn := tls.Client(c, tc)
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if err := conn.Handshake(); err != nil {
			return err
		}
		// TLS 1.3: the server's verdict on the client certificate arrives
		// after the client's handshake; a read surfaces it.
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil
		}
		return err
	}
	if err := handshake(nil); err == nil {
		t.Fatal("handshake without a client certificate succeeded")
	}
	cert, err := tls.LoadX509KeyPair(files["client"].CertFile, files["client"].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(&cert); err != nil {
		t.Fatalf("handshake with a client certificate: %v", err)
	}
}

// TestCheckXDSFilesNamed: Check (what `meshgate validate` prints) loads
// every file the control plane needs, as the running control plane will,
// and names the field of each problem: the control plane's own xds.tls
// (before, only Listen found it), a cluster's missing CA, and a listener
// certificate with another certificate's key (before, validate said OK
// and the push failed at run time).
func TestCheckXDSFilesNamed(t *testing.T) {
	dir := t.TempDir()
	_, f, err := testpki.WriteSet(dir, "xds", "cloud", "other")
	if err != nil {
		t.Fatal(err)
	}
	y := func(xdsKey, clusterCA, listenerKey string) string {
		return fmt.Sprintf(`
listeners: []
upstreams: []
xds:
  address: 127.0.0.1:18000
  tls: {cert_file: %q, key_file: %q, ca_file: %q}
  envoy:
  - node: cloud
    listeners:
    - {name: l, address: 127.0.0.1:10100, protocol: private, route_to: {cluster: c}, tls: {cert_file: %q, key_file: %q}}
    clusters:
    - {name: c, protocol: private, endpoints: [127.0.0.1:10200], tls: {ca_file: %q}}
`, f["xds"].CertFile, xdsKey, f["xds"].CAFile, f["cloud"].CertFile, listenerKey, clusterCA)
	}
	good, err := config.Parse([]byte(y(f["xds"].KeyFile, f["cloud"].CAFile, f["cloud"].KeyFile)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	bad, err := config.Parse([]byte(y(dir+"/missing-key.pem", dir+"/missing-ca.pem", f["other"].KeyFile)), dir)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(bad)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	for _, field := range []string{"xds.tls: cert_file/key_file:", "xds.envoy[0].clusters[0].tls: ca_file:", "xds.envoy[0].listeners[0].tls: cert_file/key_file:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("no %q in %v", field, err)
		}
	}
}
