package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestUnknownFieldsByPath: unknown keys are reported by YAML path and line,
// all of them, not only yaml's "line N: field x not found in type ...".
func TestUnknownFieldsByPath(t *testing.T) {
	y := `admin: {address: "127.0.0.1:0"}
listeners:
  - name: a
    kind: private
    adress: x
    address: 127.0.0.1:0
    routes: [{cmd: 1, method: /a.B/C, upstream: u, upstrem: v}]
upstreams:
  - {name: u, protocol: grpc, endpoints: ["127.0.0.1:1"], tls: {ca: x}}
defaultz: {}
`
	_, err := Parse([]byte(y), "")
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"listeners[0].adress: unknown field (line 5)",
		"listeners[0].routes[0].upstrem: unknown field (line 7)",
		"upstreams[0].tls.ca: unknown field (line 9)",
		"defaultz: unknown field (line 10)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestLifecycleFieldsDefaults: readiness, defaults.drain_grace and
// upstreams[].reconnect_backoff_max get their defaults (bad values are rows
// of TestErrorsNameTheField).
func TestLifecycleFieldsDefaults(t *testing.T) {
	base := `admin: {address: "127.0.0.1:0"}
listeners:
  - {name: a, kind: private, address: 127.0.0.1:0, routes: [{cmd: 1, method: /a.B/C, upstream: g}]}
upstreams:
  - {name: g, protocol: grpc, endpoints: ["127.0.0.1:1"]}
  - {name: p, protocol: private, endpoints: ["127.0.0.1:2"]}
`
	c, err := Parse([]byte(base), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Readiness != ReadinessAll || c.Defaults.DrainGrace != DefaultDrainGrace ||
		c.Upstreams[0].ReconnectBackoffMax != DefaultReconnectBackoffMax || c.Upstreams[1].ReconnectBackoffMax != 0 {
		t.Fatalf("defaults: %q %v %v %v", c.Readiness, c.Defaults.DrainGrace, c.Upstreams[0].ReconnectBackoffMax, c.Upstreams[1].ReconnectBackoffMax)
	}
	short, err := Parse([]byte(base+"defaults: {drain_timeout: 1s}\n"), "")
	if err != nil || short.Defaults.DrainGrace != 500*time.Millisecond {
		t.Fatalf("drain_grace with drain_timeout 1s: %v %v", short.Defaults.DrainGrace, err)
	}
}
