package config

import (
	"strings"
	"testing"
	"time"
)

const good = `
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:7000
    routes:
      - {cmd: 1, method: /demo.Echo/Echo, upstream: g}
  - name: out
    kind: grpc
    address: 127.0.0.1:7001
    routes:
      - {method: /legacy.L/*, cmd: 1, upstream: p}
upstreams:
  - {name: g, protocol: grpc, endpoints: [127.0.0.1:9000]}
  - {name: p, protocol: private, endpoints: [127.0.0.1:8000], lb: consistent_hash}
`

func TestParseAppliesDefaults(t *testing.T) {
	c, err := Parse([]byte(good), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Address != DefaultAdminAddress || c.Defaults.Timeout != DefaultTimeout {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.Listeners[0].Codec != "mgp" || c.Listeners[0].Routes[0].Timeout != 3*time.Second {
		t.Fatalf("listener defaults: %+v", c.Listeners[0])
	}
	if u := c.Upstreams[1]; u.Codec != "mgp" || u.Connections != DefaultConnections || u.Heartbeat != DefaultHeartbeat {
		t.Fatalf("upstream defaults: %+v", u)
	}
}

// TestErrorsNameTheField: each bad config is rejected with an error naming
// the offending field by its YAML path.
func TestErrorsNameTheField(t *testing.T) {
	cases := map[string]fieldCase{
		"unknown field":      {"kind: private", "kind: private\n    colour: red", "colour"},
		"bad kind":           {"kind: grpc", "kind: http", "listeners[1].kind"},
		"unknown upstream":   {"upstream: g}", "upstream: nope}", "listeners[0].routes[0].upstream"},
		"cmd to grpc":        {"upstream: p}", "upstream: g}", "listeners[1].routes[0].cmd"},
		"method to private":  {"upstream: g}", "upstream: p}", "listeners[0].routes[0].method"},
		"rewrite_method→p":   {"cmd: 1, upstream: p}", "cmd: 1, upstream: p, rewrite_method: /a.B/C}", "listeners[1].routes[0].rewrite_method"},
		"rewrite_cmd→g":      {"upstream: g}", "upstream: g, rewrite_cmd: 3}", "listeners[0].routes[0].rewrite_cmd"},
		"bad method":         {"/demo.Echo/Echo", "demo.Echo/Echo", "listeners[0].routes[0].method"},
		"dotdot method":      {"/demo.Echo/Echo", "/../Echo", "listeners[0].routes[0].method"},
		"wildcard on priv":   {"/demo.Echo/Echo", "/demo.Echo/*", "listeners[0].routes[0].method"},
		"bad address":        {"127.0.0.1:7000", "nowhere", "listeners[0].address"},
		"bad lb":             {"lb: consistent_hash", "lb: random", "upstreams[1].lb"},
		"no endpoints":       {"endpoints: [127.0.0.1:9000]", "endpoints: []", "upstreams[0].endpoints"},
		"dup listener":       {"name: out", "name: in", "listeners[1].name"},
		"unknown codec":      {"kind: private", "kind: private\n    codec: tars", "listeners[0].codec"},
		"frame too big":      {"kind: private", "kind: private\n    max_frame_size: 999999999", "listeners[0].max_frame_size"},
		"auth without keys":  {"kind: private", "kind: private\n    auth: {max_skew: 1s}", "listeners[0].auth.keys"},
		"tls without key":    {"kind: private", "kind: private\n    tls: {cert_file: c.pem}", "listeners[0].tls.key_file"},
		"upstream tls no ca": {"lb: consistent_hash", "lb: consistent_hash, tls: {cert_file: c, key_file: k}", "upstreams[1].tls.ca_file"},
	}
	wantFieldErrors(t, good, "", cases)
}

func TestAllErrorsReported(t *testing.T) {
	bad := strings.Replace(strings.Replace(good, "lb: consistent_hash", "lb: random", 1), "kind: grpc", "kind: http", 1)
	_, err := Parse([]byte(bad), "")
	if err == nil || !strings.Contains(err.Error(), "upstreams[1].lb") || !strings.Contains(err.Error(), "listeners[1].kind") {
		t.Fatalf("want both errors, got %v", err)
	}
}

func TestCheckMethod(t *testing.T) {
	for m, ok := range map[string]bool{
		"/a.B/C": true, "/a.B/*": true, "": false, "a.B/C": false, "/a.B": false, "/a.B/C/D": false,
		"/a.B/\x00": false, "/../C": false, "/a.B/..": false, "//C": false,
	} {
		if err := CheckMethod(m, true); (err == nil) != ok {
			t.Errorf("CheckMethod(%q) = %v, want ok=%v", m, err, ok)
		}
	}
}
