package config

import (
	"strings"
	"testing"
)

// Any listener to any upstream: all four listener kind × upstream
// protocol pairs are accepted, and each route keeps the fields it needs.
func TestAnyListenerToAnyUpstream(t *testing.T) {
	const y = `
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:7000
    routes:
      - {cmd: 1, method: /demo.Echo/Echo, upstream: g}
      - {cmd: 2, upstream: p, rewrite_cmd: 9}
  - name: out
    kind: grpc
    address: 127.0.0.1:7001
    routes:
      - {method: /legacy.L/*, cmd: 1, upstream: p}
      - {method: /demo.Echo/Echo, upstream: g, rewrite_method: /demo.Echo/Upper}
      - {method: /demo.Other/*, upstream: g}
upstreams:
  - {name: g, protocol: grpc, endpoints: [127.0.0.1:9000]}
  - {name: p, protocol: private, endpoints: [127.0.0.1:8000]}
`
	c, err := Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Listeners[0].Routes[1]; r.RewriteCmd != 9 || r.Method != "" {
		t.Fatalf("private→private route: %+v", r)
	}
	if r := c.Listeners[1].Routes[1]; r.RewriteMethod != "/demo.Echo/Upper" {
		t.Fatalf("grpc→grpc route: %+v", r)
	}
	// A wildcard cannot be rewritten to one method.
	bad := strings.Replace(y, "{method: /demo.Other/*, upstream: g}", "{method: /demo.Other/*, upstream: g, rewrite_method: /a.B/C}", 1)
	if _, err := Parse([]byte(bad), ""); err == nil || !strings.Contains(err.Error(), "listeners[1].routes[2].rewrite_method") {
		t.Fatalf("wildcard rewrite: %v", err)
	}
	// A private listener's route to a grpc upstream still needs a method.
	bad = strings.Replace(y, "{cmd: 1, method: /demo.Echo/Echo, upstream: g}", "{cmd: 1, upstream: g}", 1)
	if _, err := Parse([]byte(bad), ""); err == nil || !strings.Contains(err.Error(), "listeners[0].routes[0].method") {
		t.Fatalf("missing method: %v", err)
	}
	// body.format json converts between protocols: not on passthrough routes.
	for _, tc := range []struct{ from, to, field string }{
		{"{cmd: 2, upstream: p, rewrite_cmd: 9}", "{cmd: 2, upstream: p, body: {format: json, request_type: a.B, response_type: a.C}}", "listeners[0].routes[1].body"},
		{"{method: /demo.Other/*, upstream: g}", "{method: /demo.Other/*, upstream: g, body: {format: json, request_type: a.B, response_type: a.C}}", "listeners[1].routes[2].body"},
	} {
		bad = strings.Replace(y, tc.from, tc.to, 1)
		if _, err := Parse([]byte(bad), ""); err == nil || !strings.Contains(err.Error(), tc.field+": format json only on a route that converts") {
			t.Errorf("body on a passthrough route: %v", err)
		}
	}
}
