package config

import (
	"testing"
)

func xdsCfg(x string) string {
	return good + "xds:\n" + x
}

// TestXDSSecurityValidation: plaintext TCP ADS is refused unless explicit
// and on loopback; TLS needs all three files; identities and socket modes
// are checked; every error names its field.
func TestXDSSecurityValidation(t *testing.T) {
	for _, c := range []struct {
		name, x, field string // field "" = valid
	}{
		{"plaintext wildcard", "  address: 0.0.0.0:18000\n", "xds.tls"},
		{"plaintext loopback without insecure", "  address: 127.0.0.1:18000\n", "xds.tls"},
		{"insecure wildcard", "  address: 0.0.0.0:18000\n  insecure: true\n", "xds.address"},
		{"insecure public ip", "  address: 10.1.2.3:18000\n  insecure: true\n", "xds.address"},
		{"insecure loopback", "  address: 127.0.0.1:18000\n  insecure: true\n", ""},
		{"insecure localhost v6", "  address: \"[::1]:18000\"\n  insecure: true\n", ""},
		{"unix", "  address: unix:/run/x.sock\n", ""},
		{"unix mode others", "  address: unix:/run/x.sock\n  socket_mode: \"0666\"\n", "xds.socket_mode"},
		{"unix mode junk", "  address: unix:/run/x.sock\n  socket_mode: rw\n", "xds.socket_mode"},
		{"unix mode group", "  address: unix:/run/x.sock\n  socket_mode: \"0660\"\n", ""},
		{"mtls", "  address: 0.0.0.0:18000\n  tls: {cert_file: a, key_file: b, ca_file: c}\n", ""},
		{"tls without ca", "  address: 0.0.0.0:18000\n  tls: {cert_file: a, key_file: b}\n", "xds.tls.ca_file"},
		{"tls and insecure", "  address: 127.0.0.1:18000\n  insecure: true\n  tls: {cert_file: a, key_file: b, ca_file: c}\n", "xds.insecure"},
		{"bad identity", "  address: unix:/x\n  proxyless_nodes: [{node: p, identities: [idc]}]\n", "xds.proxyless_nodes[0].identities[0]"},
		{"shared identity", "  address: unix:/x\n  proxyless_nodes: [{node: p, identities: [\"dns:a\"]}, {node: q, identities: [\"dns:a\"]}]\n", "xds.proxyless_nodes[1].identities[0]"},
		{"spiffe identity", "  address: unix:/x\n  proxyless_nodes: [{node: p, identities: [\"spiffe://cluster.local/ns/x/sa/p\"]}]\n", ""},
		{"proxyless node missing", "  address: unix:/x\n  proxyless_nodes: [{identities: [\"dns:a\"]}]\n", "xds.proxyless_nodes[0].node"},
		{"xds_tls without ca", "  address: unix:/x\n  envoy:\n  - node: e\n    xds_tls: {cert_file: a, key_file: b}\n    listeners: []\n", "xds.envoy[0].xds_tls.ca_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.field == "" {
				mustParse(t, xdsCfg(c.x), "")
				return
			}
			wantFieldError(t, xdsCfg(c.x), "", c.field)
		})
	}
}

func TestXDSSecurityDefaults(t *testing.T) {
	c, err := Parse([]byte(xdsCfg("  address: unix:/x\n  envoy:\n  - {node: idc, listeners: []}\n  proxyless_nodes: [{node: p}]\n")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.XDS.SocketMode != "0600" || c.XDS.SocketFileMode() != 0o600 {
		t.Fatalf("socket mode %q", c.XDS.SocketMode)
	}
	ids := c.XDS.NodeIdentities()
	if got := ids["dns:idc"]; len(got) != 1 || got[0] != "idc" {
		t.Fatalf("dns:idc → %v", got)
	}
	if got := ids["dns:p"]; len(got) != 1 || got[0] != "p" {
		t.Fatalf("dns:p → %v", got)
	}
}
