package config

import (
	"strings"
	"testing"
)

func TestObservabilityDefaults(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(good, "listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317', insecure: true}}\naccess_log: {hash_uin: true}\nlisteners:", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Telemetry.Tracing.Ratio() != 1 || c.AccessLog.Ratio() != 1 {
		t.Fatalf("ratios %v %v", c.Telemetry.Tracing.Ratio(), c.AccessLog.Ratio())
	}
	if l := c.Listeners[1]; l.RecvSize() != DefaultMaxMsgSize || l.SendSize() != DefaultMaxMsgSize {
		t.Fatalf("msg sizes %d %d", l.RecvSize(), l.SendSize())
	}
}
