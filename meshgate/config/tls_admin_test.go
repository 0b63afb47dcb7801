package config

import (
	"errors"
	"strings"
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

// TestTLSAndAdminErrorsNameTheField: every bad admin/TLS setting is
// rejected naming its YAML path.
func TestTLSAndAdminErrorsNameTheField(t *testing.T) {
	cases := map[string]struct{ prefix, from, to, field string }{
		"admin on every interface by omission": {"admin: {address: \":9901\"}\n", "", "", "admin.address"},
		"health same as admin":                 {"admin: {address: 127.0.0.1:9901, health_address: 127.0.0.1:9901}\n", "", "", "admin.health_address"},
		"health not host:port":                 {"admin: {health_address: nine}\n", "", "", "admin.health_address"},
		"refresh too small":                    {"tls: {refresh_interval: 1ms}\n", "", "", "tls.refresh_interval"},
		"refresh negative":                     {"tls: {refresh_interval: -1s}\n", "", "", "tls.refresh_interval"},
		"unknown tls field":                    {"tls: {refresh: 1s}\n", "", "", "refresh"},
		"key apart from cert": {"", "address: 127.0.0.1:7000\n",
			"address: 127.0.0.1:7000\n    tls: {cert_file: a/c.pem, key_file: b/k.pem}\n", "listeners[0].tls.key_file"},
		"private upstream tls without ca": {"", "lb: consistent_hash}",
			"lb: consistent_hash, tls: {cert_file: c.pem, key_file: k.pem}}", "upstreams[1].tls.ca_file"},
	}
	for name, tc := range cases {
		y := tc.prefix + good
		if tc.from != "" {
			if !strings.Contains(y, tc.from) {
				t.Fatalf("%s: %q not in config", name, tc.from)
			}
			y = strings.Replace(y, tc.from, tc.to, 1)
		}
		_, err := Parse([]byte(y), "")
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got %v, want an error naming %s", name, err, tc.field)
		}
	}
	// A private upstream with full mTLS validates.
	y := strings.Replace(good, "lb: consistent_hash}", "lb: consistent_hash, tls: {cert_file: t/c.pem, key_file: t/k.pem, ca_file: ca.pem, server_name: backend}}", 1)
	if _, err := Parse([]byte(y), ""); err != nil {
		t.Fatalf("private upstream mTLS: %v", err)
	}
}
