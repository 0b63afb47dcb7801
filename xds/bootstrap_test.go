package xds

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds/model"
)

func mtlsBootstrapConfig(t *testing.T, nodeTLS string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`
listeners: []
upstreams: []
xds:
  address: 10.0.0.5:18000
  tls: {cert_file: xds.pem, key_file: xds-key.pem, ca_file: ca.pem}
  envoy:
  - node: idc
    listeners: []%s
`, nodeTLS)
	cfg, err := config.Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// xdsUpstreamTLS parses a rendered bootstrap and returns the xds cluster's
// UpstreamTlsContext (nil without a transport socket).
func xdsUpstreamTLS(t *testing.T, y []byte) *tlsv3.UpstreamTlsContext {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrap.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatal(err)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != xdsClusterName {
			continue
		}
		ts := c.GetTransportSocket()
		if ts == nil {
			return nil
		}
		var u tlsv3.UpstreamTlsContext
		if err := ts.GetTypedConfig().UnmarshalTo(&u); err != nil {
			t.Fatal(err)
		}
		return &u
	}
	t.Fatal("no xds cluster")
	return nil
}

// TestBootstrapMTLS: with xds.tls on the control plane the Envoy bootstrap
// carries a TLS transport socket with the node's client certificate (from
// xds_tls or the flags); without client TLS it is refused.
func TestBootstrapMTLS(t *testing.T) {
	cfg := mtlsBootstrapConfig(t, "\n    xds_tls: {cert_file: /certs/idc.pem, key_file: /certs/idc-key.pem, ca_file: /certs/ca.pem, server_name: meshgate-xds}")
	b, err := Bootstrap(xdstest.Model(t, cfg), "idc", BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u := xdsUpstreamTLS(t, b)
	if u == nil {
		t.Fatal("xds cluster has no TLS transport socket")
	}
	c := u.GetCommonTlsContext()
	if got := c.GetTlsCertificates()[0].GetCertificateChain().GetFilename(); got != "/certs/idc.pem" {
		t.Fatalf("certificate_chain %q", got)
	}
	if got := c.GetTlsCertificates()[0].GetPrivateKey().GetFilename(); got != "/certs/idc-key.pem" {
		t.Fatalf("private_key %q", got)
	}
	vc := c.GetValidationContext()
	if vc.GetTrustedCa().GetFilename() != "/certs/ca.pem" || u.GetSni() != "meshgate-xds" ||
		vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "meshgate-xds" {
		t.Fatalf("validation %v sni %q", vc, u.GetSni())
	}
	if strings.Contains(string(b), "inline") {
		t.Fatal("bootstrap inlines key material")
	}

	// Flags override the config.
	b, err = Bootstrap(xdstest.Model(t, cfg), "idc", BootstrapOptions{XDSTLS: &model.ClientTLS{CertFile: "a.pem", KeyFile: "a-key.pem", CAFile: "b.pem"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := xdsUpstreamTLS(t, b).GetCommonTlsContext().GetTlsCertificates()[0].GetCertificateChain().GetFilename(); got != "a.pem" {
		t.Fatalf("flag override: %q", got)
	}

	// No client TLS for an mTLS control plane: refused, naming the fix.
	if _, err := Bootstrap(xdstest.Model(t, mtlsBootstrapConfig(t, "")), "idc", BootstrapOptions{}); err == nil || !strings.Contains(err.Error(), "xds_tls") {
		t.Fatalf("err = %v", err)
	}
	// A unix-socket control plane without TLS: no transport socket.
	b, err = Bootstrap(loadTestModel(t, "bridge.yaml"), "idc", BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if xdsUpstreamTLS(t, b) != nil {
		t.Fatal("plaintext bootstrap has a TLS transport socket")
	}
}

func TestGRPCBootstrapTLS(t *testing.T) {
	b, err := GRPCBootstrap("10.0.0.5:18000", "p1", &model.ClientTLS{CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem"})
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		XDSServers []struct {
			ChannelCreds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	cc := v.XDSServers[0].ChannelCreds[0]
	if cc.Type != "tls" || cc.Config["certificate_file"] != "c.pem" || cc.Config["private_key_file"] != "k.pem" || cc.Config["ca_certificate_file"] != "ca.pem" {
		t.Fatalf("channel_creds %+v", cc)
	}
	if _, err := GRPCBootstrap("x:1", "p1", &model.ClientTLS{CertFile: "c.pem"}); err == nil {
		t.Fatal("incomplete TLS accepted")
	}
}
