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
