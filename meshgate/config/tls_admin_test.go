package config

import (
	"testing"
)

// TestTLSAndAdminDefaults: pprof off, no health listener, admin on
// loopback, TLS files re-read every minute.
func TestTLSAndAdminDefaults(t *testing.T) {
	c, err := Parse([]byte(good), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.PProf || c.Admin.HealthAddress != "" || !c.Admin.IsLoopback() {
		t.Fatalf("admin defaults: %+v", c.Admin)
	}
	if c.TLS.RefreshInterval != DefaultTLSRefresh {
		t.Fatalf("tls.refresh_interval default: %v", c.TLS.RefreshInterval)
	}
	c, err = Parse([]byte("admin: {address: 0.0.0.0:9901, health_address: 0.0.0.0:9900, pprof: true}\ntls: {refresh_interval: 5s}\n"+good), "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Admin.PProf || c.Admin.HealthAddress != "0.0.0.0:9900" || c.Admin.IsLoopback() || c.TLS.RefreshInterval.String() != "5s" {
		t.Fatalf("explicit admin/tls: %+v %+v", c.Admin, c.TLS)
	}
}

// TestPrivateUpstreamMTLS: a private upstream with full mTLS validates
// (its bad settings are rows of TestErrorsNameTheField).
func TestPrivateUpstreamMTLS(t *testing.T) {
	mustParse(t, edit(t, good, "lb: consistent_hash}", "lb: consistent_hash, tls: {cert_file: t/c.pem, key_file: t/k.pem, ca_file: ca.pem, server_name: backend}}"), "")
}
