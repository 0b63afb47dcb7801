package config

import (
	"testing"
)

// anyGood routes every listener kind to every upstream protocol.
const anyGood = `
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

// Any listener to any upstream: all four listener kind × upstream
// protocol pairs are accepted, and each route keeps the fields it needs
// (what each pair may not have is in TestErrorsNameTheField).
func TestAnyListenerToAnyUpstream(t *testing.T) {
	c := mustParse(t, anyGood, "")
	if r := c.Listeners[0].Routes[1]; r.RewriteCmd != 9 || r.Method != "" {
		t.Fatalf("private→private route: %+v", r)
	}
	if r := c.Listeners[1].Routes[1]; r.RewriteMethod != "/demo.Echo/Upper" {
		t.Fatalf("grpc→grpc route: %+v", r)
	}
}
