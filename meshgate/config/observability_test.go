package config

import (
	"strings"
	"testing"
)

// TestObservabilityErrorsNameTheField: bad telemetry, access log, message
// size, reflection, metadata and body settings are rejected naming the
// field by its YAML path.
func TestObservabilityErrorsNameTheField(t *testing.T) {
	const out = "kind: grpc"
	cases := map[string]fieldCase{
		"tracing no endpoint":  {"listeners:", "telemetry: {tracing: {insecure: true}}\nlisteners:", "telemetry.tracing.otlp_endpoint"},
		"tracing bad endpoint": {"listeners:", "telemetry: {tracing: {otlp_endpoint: nowhere, insecure: true}}\nlisteners:", "telemetry.tracing.otlp_endpoint"},
		"tracing no tls":       {"listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317'}}\nlisteners:", "telemetry.tracing.tls"},
		"tracing tls+insecure": {"listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317', insecure: true, tls: {ca_file: ca.pem}}}\nlisteners:", "telemetry.tracing.insecure"},
		"tracing tls no ca":    {"listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317', tls: {server_name: c}}}\nlisteners:", "telemetry.tracing.tls.ca_file"},
		"sampling ratio":       {"listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317', insecure: true, sampling_ratio: 1.5}}\nlisteners:", "telemetry.tracing.sampling_ratio"},
		"log sample ratio":     {"listeners:", "access_log: {sample_ratio: 0}\nlisteners:", "access_log.sample_ratio"},
		"recv size":            {out, out + "\n    max_recv_msg_size: -1", "listeners[1].max_recv_msg_size"},
		"send size":            {out, out + "\n    max_send_msg_size: 2000000000", "listeners[1].max_send_msg_size"},
		"size on private":      {"kind: private", "kind: private\n    max_recv_msg_size: 10", "listeners[0].max_recv_msg_size"},
		"upstream size":        {"lb: consistent_hash", "lb: consistent_hash, max_recv_msg_size: -5", "upstreams[1].max_recv_msg_size"},
		"reflection empty":     {out, out + "\n    reflection: {descriptor_sets: []}", "listeners[1].reflection.descriptor_sets"},
		"metadata low ext":     {out, out + "\n    metadata: [{ext: 4, key: x-a}]", "listeners[1].metadata[0].ext"},
		"metadata dup ext":     {out, out + "\n    metadata: [{ext: 0x8001, key: x-a}, {ext: 0x8001, key: x-b}]", "listeners[1].metadata[1].ext"},
		"metadata bad key":     {out, out + "\n    metadata: [{ext: 0x8001, key: X-A}]", "listeners[1].metadata[0].key"},
		"metadata grpc key":    {out, out + "\n    metadata: [{ext: 0x8001, key: grpc-timeout}]", "listeners[1].metadata[0].key"},
		"metadata mgp key":     {out, out + "\n    metadata: [{ext: 0x8001, key: x-mgp-uin}]", "listeners[1].metadata[0].key"},
		"body format":          {"upstream: p}", "upstream: p, body: {format: xml}}", "listeners[1].routes[0].body.format"},
		"body no types":        {"upstream: p}", "upstream: p, body: {format: json}}", "listeners[1].routes[0].body.request_type"},
		"body no descriptors":  {"upstream: p}", "upstream: p, body: {format: json, request_type: a.B, response_type: a.C}}", "listeners[1].routes[0].body"},
	}
	wantFieldErrors(t, good, "", cases)
}

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
