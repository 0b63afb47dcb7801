package config

import (
	"strings"
	"testing"
)

func TestPushDefaults(t *testing.T) {
	y := strings.Replace(good, "    address: 127.0.0.1:7000\n", "    address: 127.0.0.1:7000\n    push: {login_cmd: 9}\n", 1)
	y = strings.Replace(y, "    address: 127.0.0.1:7001\n", "    address: 127.0.0.1:7001\n    push: {api: true}\n", 1)
	y = strings.Replace(y, "lb: consistent_hash}", "lb: consistent_hash, push: {to: grpc, method: /a.B/C, upstream: g}}", 1)
	c, err := Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Listeners[0].Push
	if p.LoginCmd != 9 || p.QueueBytes != DefaultPushQueueBytes || p.MaxConnsPerUIN != DefaultMaxConnsPerUIN || p.MaxUINsPerConn != DefaultMaxUINsPerConn {
		t.Fatalf("listeners[0].push: %+v", p)
	}
	if !c.Listeners[1].Push.API {
		t.Fatal("listeners[1].push.api lost")
	}
	if u := c.Upstreams[1].Push; u.MaxConcurrency != DefaultPushMaxConcurrency || u.Timeout != c.Defaults.Timeout {
		t.Fatalf("upstreams[1].push: %+v", u)
	}
}

func TestPushTrustUINOrAuthAccepted(t *testing.T) {
	for _, add := range []string{"    push: {trust_uin: true}\n", "    push: {}\n    auth: {keys: {1: \"k\"}}\n"} {
		y := strings.Replace(good, "    address: 127.0.0.1:7000\n", "    address: 127.0.0.1:7000\n"+add, 1)
		if _, err := Parse([]byte(y), ""); err != nil {
			t.Errorf("%q: %v", add, err)
		}
	}
}

func TestPushErrorsNameTheField(t *testing.T) {
	cases := map[string]fieldCase{
		"bad stream":        {"upstream: g}", "upstream: g, stream: both}", "listeners[0].routes[0].stream"},
		"oneway stream":     {"upstream: p}", "upstream: p, stream: server, oneway: true}", "listeners[1].routes[0].oneway"},
		"json stream":       {"upstream: g}", "upstream: g, stream: bidi, body: {format: json}}", "listeners[0].routes[0].body: body transcoding applies to unary routes only"},
		"api on private":    {"address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {api: true}\n", "listeners[0].push.api"},
		"tiny queue":        {"address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {login_cmd: 1, queue_bytes: 10}\n", "listeners[0].push.queue_bytes"},
		"conns per uin":     {"address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {login_cmd: 1, max_conns_per_uin: -1}\n", "listeners[0].push.max_conns_per_uin"},
		"claimable uin":     {"address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {}\n", "listeners[0].push.login_cmd"},
		"grpc without api":  {"address: 127.0.0.1:7001\n", "address: 127.0.0.1:7001\n    push: {}\n", "listeners[1].push.api"},
		"grpc login":        {"address: 127.0.0.1:7001\n", "address: 127.0.0.1:7001\n    push: {api: true, login_cmd: 3}\n", "listeners[1].push"},
		"bad to":            {"lb: consistent_hash}", "lb: consistent_hash, push: {to: nowhere}}", "upstreams[1].push.to"},
		"open push api":     {"address: 127.0.0.1:7001\n", "address: 0.0.0.0:7001\n    push: {api: true}\n", "listeners[1].push.api: the push API on a non-loopback address needs mTLS"},
		"grpc trust_uin":    {"address: 127.0.0.1:7001\n", "address: 127.0.0.1:7001\n    push: {api: true, trust_uin: true}\n", "listeners[1].push"},
		"downstream no lis": {"lb: consistent_hash}", "lb: consistent_hash, push: {to: downstream}}", "upstreams[1].push.to"},
		"grpc no method":    {"lb: consistent_hash}", "lb: consistent_hash, push: {to: grpc, upstream: g}}", "upstreams[1].push.method"},
		"grpc wrong up":     {"lb: consistent_hash}", "lb: consistent_hash, push: {to: grpc, method: /a.B/C, upstream: p}}", "upstreams[1].push.upstream"},
		"grpc no up":        {"lb: consistent_hash}", "lb: consistent_hash, push: {to: grpc, method: /a.B/C}}", "upstreams[1].push.upstream"},
		"push on grpc up":   {"endpoints: [127.0.0.1:9000]}", "endpoints: [127.0.0.1:9000], push: {to: grpc, method: /a.B/C, upstream: g}}", "upstreams[0].push"},
	}
	wantFieldErrors(t, good, "", cases)
}
