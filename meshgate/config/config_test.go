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

// TestErrorsNameTheField: each bad config (a fixture with one edit) is
// rejected with an ErrInvalid error naming the offending field by its YAML
// path: core listeners, routes and upstreams; any listener to any
// upstream; admin, TLS and connection limits; telemetry, access log,
// message sizes, reflection, metadata and body; auth and authz; push;
// resilience; migration (split, shadow, migrate); xds:/// upstreams and
// the xDS model.
func TestErrorsNameTheField(t *testing.T) {
	const out = "kind: grpc" // the grpc listener of good
	fixtures := map[string]struct{ y, dir string }{
		"core": {good, ""}, "anypath": {anyGood, ""}, "tls": {good, ""}, "limits": {good, ""},
		"observability": {good, ""}, "auth": {authGood, ""}, "push": {good, ""},
		"resilience": {resilGood, ""}, "migrate": {migrateGood, writeAllow(t, "1\n")},
		"xds": {good, ""}, "xdsmodel": {xdsModelYAML, "/etc/mg"},
	}
	for _, c := range []struct{ fixture, name, from, to, field string }{
		{"core", "unknown field", "kind: private", "kind: private\n    colour: red", "colour"},
		{"core", "bad kind", "kind: grpc", "kind: http", "listeners[1].kind"},
		{"core", "unknown upstream", "upstream: g}", "upstream: nope}", "listeners[0].routes[0].upstream"},
		{"core", "cmd to grpc", "upstream: p}", "upstream: g}", "listeners[1].routes[0].cmd"},
		{"core", "method to private", "upstream: g}", "upstream: p}", "listeners[0].routes[0].method"},
		{"core", "rewrite_method→p", "cmd: 1, upstream: p}", "cmd: 1, upstream: p, rewrite_method: /a.B/C}", "listeners[1].routes[0].rewrite_method"},
		{"core", "rewrite_cmd→g", "upstream: g}", "upstream: g, rewrite_cmd: 3}", "listeners[0].routes[0].rewrite_cmd"},
		{"core", "bad method", "/demo.Echo/Echo", "demo.Echo/Echo", "listeners[0].routes[0].method"},
		{"core", "dotdot method", "/demo.Echo/Echo", "/../Echo", "listeners[0].routes[0].method"},
		{"core", "wildcard on priv", "/demo.Echo/Echo", "/demo.Echo/*", "listeners[0].routes[0].method"},
		{"core", "bad address", "127.0.0.1:7000", "nowhere", "listeners[0].address"},
		{"core", "bad lb", "lb: consistent_hash", "lb: random", "upstreams[1].lb"},
		{"core", "no endpoints", "endpoints: [127.0.0.1:9000]", "endpoints: []", "upstreams[0].endpoints"},
		{"core", "dup listener", "name: out", "name: in", "listeners[1].name"},
		{"core", "unknown codec", "kind: private", "kind: private\n    codec: tars", "listeners[0].codec"},
		{"core", "frame too big", "kind: private", "kind: private\n    max_frame_size: 999999999", "listeners[0].max_frame_size"},
		{"core", "auth without keys", "kind: private", "kind: private\n    auth: {max_skew: 1s}", "listeners[0].auth.keys"},
		{"core", "listener grpc_transport", "address: 127.0.0.1:7001", "address: 127.0.0.1:7001\n    grpc_transport: h2", `listeners[1].grpc_transport: must be "grpc-go" or "direct", got "h2"`},
		{"core", "direct on a private listener", "address: 127.0.0.1:7000", "address: 127.0.0.1:7000\n    grpc_transport: direct", `listeners[0].grpc_transport: "direct" is for grpc listeners only`},
		{"core", "write_timeout on grpc", "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000], write_timeout: 1s", "upstreams[0].write_timeout: only for protocol private"},
		{"core", "write_timeout negative", "lb: consistent_hash}", "lb: consistent_hash, write_timeout: -1s}", "upstreams[1].write_timeout: must be in"},
		{"core", "upstream grpc_transport", "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000], grpc_transport: h2", `upstreams[0].grpc_transport: must be "grpc-go" or "direct", got "h2"`},
		{"core", "direct on a private upstream", "endpoints: [127.0.0.1:8000]", "endpoints: [127.0.0.1:8000], grpc_transport: direct", `upstreams[1].grpc_transport: "direct" is for grpc upstreams only`},
		{"core", "direct to xds", "endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///svc"], grpc_transport: direct`, `upstreams[0].grpc_transport: "direct" needs static endpoints`},
		{"core", "tls without key", "kind: private", "kind: private\n    tls: {cert_file: c.pem}", "listeners[0].tls.key_file"},
		{"core", "upstream tls no ca", "lb: consistent_hash", "lb: consistent_hash, tls: {cert_file: c, key_file: k}", "upstreams[1].tls.ca_file"},
		{"core", "oneway on private", "upstream: g}", "upstream: g, oneway: true}", "listeners[0].routes[0].oneway"},
		{"core", "readiness", "listeners:", "readiness: some\nlisteners:", "readiness: must be"},
		{"core", "drain_grace above drain_timeout", "listeners:", "defaults: {drain_timeout: 1s, drain_grace: 2s}\nlisteners:", "defaults.drain_grace: must not exceed"},
		{"core", "backoff on private", "lb: consistent_hash}", "lb: consistent_hash, reconnect_backoff_max: 1s}", "upstreams[1].reconnect_backoff_max: only for protocol grpc"},
		// A NaN passed every "x < lo || x > hi" check; the shared checks reject it.
		{"core", "NaN weight", "lb: consistent_hash}", "lb: consistent_hash, resilience: {adaptive_weights: {min_weight_percent: .nan}}}", "upstreams[1].resilience.adaptive_weights.min_weight_percent: must"},
		{"core", "NaN tolerance", "lb: consistent_hash}", "lb: consistent_hash, resilience: {adaptive_concurrency: {tolerance: .nan}}}", "upstreams[1].resilience.adaptive_concurrency.tolerance: must"},
		{"anypath", "wildcard rewrite", "{method: /demo.Other/*, upstream: g}", "{method: /demo.Other/*, upstream: g, rewrite_method: /a.B/C}", "listeners[1].routes[2].rewrite_method"},
		{"anypath", "grpc upstream without method", "{cmd: 1, method: /demo.Echo/Echo, upstream: g}", "{cmd: 1, upstream: g}", "listeners[0].routes[0].method"},
		// body.format json converts between protocols: not on passthrough routes.
		{"anypath", "json on private passthrough", "{cmd: 2, upstream: p, rewrite_cmd: 9}", "{cmd: 2, upstream: p, body: {format: json, request_type: a.B, response_type: a.C}}", "listeners[0].routes[1].body: format json only on a route that converts"},
		{"anypath", "json on grpc passthrough", "{method: /demo.Other/*, upstream: g}", "{method: /demo.Other/*, upstream: g, body: {format: json, request_type: a.B, response_type: a.C}}", "listeners[1].routes[2].body: format json only on a route that converts"},
		{"tls", "admin on every interface by omission", "listeners:", "admin: {address: \":9901\"}\nlisteners:", "admin.address"},
		{"tls", "health same as admin", "listeners:", "admin: {address: 127.0.0.1:9901, health_address: 127.0.0.1:9901}\nlisteners:", "admin.health_address"},
		{"tls", "health not host:port", "listeners:", "admin: {health_address: nine}\nlisteners:", "admin.health_address"},
		{"tls", "refresh too small", "listeners:", "tls: {refresh_interval: 1ms}\nlisteners:", "tls.refresh_interval"},
		{"tls", "refresh negative", "listeners:", "tls: {refresh_interval: -1s}\nlisteners:", "tls.refresh_interval"},
		{"tls", "unknown tls field", "listeners:", "tls: {refresh: 1s}\nlisteners:", "refresh"},
		{"tls", "key apart from cert", "address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    tls: {cert_file: a/c.pem, key_file: b/k.pem}\n", "listeners[0].tls.key_file"},
		{"limits", "negative max_connections", "listeners:", "defaults:\n  limits: {max_connections: -1}\nlisteners:", "defaults.limits.max_connections"},
		{"limits", "small window", "listeners:", "defaults:\n  limits: {stream_window: 100}\nlisteners:", "defaults.limits.stream_window"},
		{"limits", "negative timeout", "listeners:", "defaults:\n  limits: {recv_timeout: -1s}\nlisteners:", "defaults.limits.recv_timeout"},
		{"limits", "huge message", "listeners:", "defaults:\n  limits: {max_send_message_size: 100000000}\nlisteners:", "defaults.limits.max_send_message_size"},
		{"limits", "tiny header list", "listeners:", "defaults:\n  limits: {max_header_list_size: 10}\nlisteners:", "defaults.limits.max_header_list_size"},
		{"limits", "fd_reserve", "    address: 127.0.0.1:7000\n", "    address: 127.0.0.1:7000\n    limits: {fd_reserve: 10}\n", "listeners[0].limits.fd_reserve"},
		{"limits", "in flight per connection", "    address: 127.0.0.1:7000\n", "    address: 127.0.0.1:7000\n    limits: {max_in_flight_per_connection: -2}\n", "listeners[0].limits.max_in_flight_per_connection"},
		{"observability", "tracing no endpoint", "listeners:", "telemetry: {tracing: {insecure: true}}\nlisteners:", "telemetry.tracing.otlp_endpoint"},
		{"observability", "tracing bad endpoint", "listeners:", "telemetry: {tracing: {otlp_endpoint: nowhere, insecure: true}}\nlisteners:", "telemetry.tracing.otlp_endpoint"},
		{"observability", "tracing no tls", "listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317'}}\nlisteners:", "telemetry.tracing.tls"},
		{"observability", "tracing tls+insecure", "listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317', insecure: true, tls: {ca_file: ca.pem}}}\nlisteners:", "telemetry.tracing.insecure"},
		{"observability", "tracing tls no ca", "listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317', tls: {server_name: c}}}\nlisteners:", "telemetry.tracing.tls.ca_file"},
		{"observability", "sampling ratio", "listeners:", "telemetry: {tracing: {otlp_endpoint: 'c:4317', insecure: true, sampling_ratio: 1.5}}\nlisteners:", "telemetry.tracing.sampling_ratio"},
		{"observability", "log sample ratio", "listeners:", "access_log: {sample_ratio: 0}\nlisteners:", "access_log.sample_ratio"},
		{"observability", "recv size", out, out + "\n    max_recv_msg_size: -1", "listeners[1].max_recv_msg_size"},
		{"observability", "send size", out, out + "\n    max_send_msg_size: 2000000000", "listeners[1].max_send_msg_size"},
		{"observability", "size on private", "kind: private", "kind: private\n    max_recv_msg_size: 10", "listeners[0].max_recv_msg_size"},
		{"observability", "upstream size", "lb: consistent_hash", "lb: consistent_hash, max_recv_msg_size: -5", "upstreams[1].max_recv_msg_size"},
		{"observability", "reflection empty", out, out + "\n    reflection: {descriptor_sets: []}", "listeners[1].reflection.descriptor_sets"},
		{"observability", "metadata low ext", out, out + "\n    metadata: [{ext: 4, key: x-a}]", "listeners[1].metadata[0].ext"},
		{"observability", "metadata dup ext", out, out + "\n    metadata: [{ext: 0x8001, key: x-a}, {ext: 0x8001, key: x-b}]", "listeners[1].metadata[1].ext"},
		{"observability", "metadata bad key", out, out + "\n    metadata: [{ext: 0x8001, key: X-A}]", "listeners[1].metadata[0].key"},
		{"observability", "metadata grpc key", out, out + "\n    metadata: [{ext: 0x8001, key: grpc-timeout}]", "listeners[1].metadata[0].key"},
		{"observability", "metadata mgp key", out, out + "\n    metadata: [{ext: 0x8001, key: x-mgp-uin}]", "listeners[1].metadata[0].key"},
		{"observability", "body format", "upstream: p}", "upstream: p, body: {format: xml}}", "listeners[1].routes[0].body.format"},
		{"observability", "body no types", "upstream: p}", "upstream: p, body: {format: json}}", "listeners[1].routes[0].body.request_type"},
		{"observability", "body no descriptors", "upstream: p}", "upstream: p, body: {format: json, request_type: a.B, response_type: a.C}}", "listeners[1].routes[0].body"},
		{"auth", "unknown key id", "key_ids: [1, 2]", "key_ids: [1, 9]", "listeners[0].authz.allow[0].key_ids[1]"},
		{"auth", "no key ids", "key_ids: [1, 2], ", "", "listeners[0].authz.allow[0].key_ids"},
		{"auth", "no cmds", ", cmds: [1]", "", "listeners[0].authz.allow[0].cmds"},
		{"auth", "methods on private", "cmds: [1]}", "cmds: [1], methods: [/a.B/C]}", "listeners[0].authz.allow[0].methods"},
		{"auth", "identities on private", "cmds: [1]}", "cmds: [1], identities: [\"dns:a.b\"]}", "listeners[0].authz.allow[0].identities"},
		{"auth", "authz without auth", "    auth: {keys: {1: \"s1\", 2: \"s2\"}, max_skew: 30s}\n", "", "listeners[0].authz"},
		{"auth", "empty allow", "        - {key_ids: [1, 2], cmds: [1]}\n", "", "listeners[0].authz.allow"},
		{"auth", "negative max_skew", "max_skew: 30s", "max_skew: -1s", "listeners[0].auth.max_skew"},
		{"auth", "huge max_skew", "max_skew: 30s", "max_skew: 1h", "listeners[0].auth.max_skew"},
		{"auth", "negative max_nonces", "max_skew: 30s", "max_skew: 30s, max_nonces: -1", "listeners[0].auth.max_nonces"},
		{"auth", "per key above total", "max_skew: 30s", "max_skew: 30s, max_nonces: 10, max_nonces_per_key: 11", "listeners[0].auth.max_nonces_per_key"},
		{"auth", "empty secret", `2: "s2"`, `2: ""`, "listeners[0].auth.keys[2]"},
		{"auth", "bad method pattern", "/legacy.L/Get,", "/legacy.L/Get/x,", "listeners[1].authz.allow[0].methods[0]"},
		{"auth", "wildcard method prefix", "/legacy.L/*]", "/legacy.*]", "listeners[1].authz.allow[0].methods[1]"},
		{"auth", "bad identity", "dns:web.game.svc", "dns:web..svc", "listeners[1].authz.allow[0].identities[1]"},
		{"auth", "wildcard identity", "dns:web.game.svc", "dns:*.game.svc", "listeners[1].authz.allow[0].identities[1]"},
		{"auth", "uri without host", "spiffe://example.org/ns/game/sa/web", "spiffe:///web", "listeners[1].authz.allow[0].identities[0]"},
		{"auth", "no identities", "identities: [\"spiffe://example.org/ns/game/sa/web\", \"dns:web.game.svc\"], ", "", "listeners[1].authz.allow[0].identities"},
		{"auth", "key ids on grpc", "methods: [/legacy.L/Get, /legacy.L/*]}", "methods: [/legacy.L/Get], key_ids: [1]}", "listeners[1].authz.allow[0].key_ids"},
		{"auth", "cmds on grpc", "methods: [/legacy.L/Get, /legacy.L/*]}", "methods: [/legacy.L/Get, /legacy.L/*], cmds: [1]}", "listeners[1].authz.allow[0].cmds"},
		{"auth", "authz without mtls", ", ca_file: ca.pem}", "}", "listeners[1].authz"},
		{"auth", "auth on grpc", "    tls: {cert_file", "    auth: {keys: {1: x}}\n    tls: {cert_file", "listeners[1].auth"},
		{"auth", "auth on other codec", "kind: private\n", "kind: private\n    codec: le\n", "listeners[0].auth"},
		{"push", "bad stream", "upstream: g}", "upstream: g, stream: both}", "listeners[0].routes[0].stream"},
		{"push", "oneway stream", "upstream: p}", "upstream: p, stream: server, oneway: true}", "listeners[1].routes[0].oneway"},
		{"push", "json stream", "upstream: g}", "upstream: g, stream: bidi, body: {format: json}}", "listeners[0].routes[0].body: body transcoding applies to unary routes only"},
		{"push", "api on private", "address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {api: true}\n", "listeners[0].push.api"},
		{"push", "tiny queue", "address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {login_cmd: 1, queue_bytes: 10}\n", "listeners[0].push.queue_bytes"},
		{"push", "conns per uin", "address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {login_cmd: 1, max_conns_per_uin: -1}\n", "listeners[0].push.max_conns_per_uin"},
		{"push", "claimable uin", "address: 127.0.0.1:7000\n", "address: 127.0.0.1:7000\n    push: {}\n", "listeners[0].push.login_cmd"},
		{"push", "grpc without api", "address: 127.0.0.1:7001\n", "address: 127.0.0.1:7001\n    push: {}\n", "listeners[1].push.api"},
		{"push", "grpc login", "address: 127.0.0.1:7001\n", "address: 127.0.0.1:7001\n    push: {api: true, login_cmd: 3}\n", "listeners[1].push"},
		{"push", "bad to", "lb: consistent_hash}", "lb: consistent_hash, push: {to: nowhere}}", "upstreams[1].push.to"},
		{"push", "open push api", "address: 127.0.0.1:7001\n", "address: 0.0.0.0:7001\n    push: {api: true}\n", "listeners[1].push.api: the push API on a non-loopback address needs mTLS"},
		{"push", "grpc trust_uin", "address: 127.0.0.1:7001\n", "address: 127.0.0.1:7001\n    push: {api: true, trust_uin: true}\n", "listeners[1].push"},
		{"push", "downstream no lis", "lb: consistent_hash}", "lb: consistent_hash, push: {to: downstream}}", "upstreams[1].push.to"},
		{"push", "grpc no method", "lb: consistent_hash}", "lb: consistent_hash, push: {to: grpc, upstream: g}}", "upstreams[1].push.method"},
		{"push", "grpc wrong up", "lb: consistent_hash}", "lb: consistent_hash, push: {to: grpc, method: /a.B/C, upstream: p}}", "upstreams[1].push.upstream"},
		{"push", "grpc no up", "lb: consistent_hash}", "lb: consistent_hash, push: {to: grpc, method: /a.B/C}}", "upstreams[1].push.upstream"},
		{"push", "push on grpc up", "endpoints: [127.0.0.1:9000]}", "endpoints: [127.0.0.1:9000], push: {to: grpc, method: /a.B/C, upstream: g}}", "upstreams[0].push"},
		{"resilience", "retry not idempotent", "upstream: g, switch: recommend}", "upstream: g, max_attempts: 3}", "listeners[0].routes[1].max_attempts"},
		{"resilience", "hedge not idempotent", "upstream: g, switch: recommend}", "upstream: g, hedge_delay: 1ms}", "listeners[0].routes[1].hedge_delay"},
		{"resilience", "bad retry_on", "idempotent: true,", "idempotent: true, retry_on: [always],", "listeners[0].routes[0].retry_on[0]"},
		{"resilience", "unknown switch", "switch: recommend}", "switch: nope}", "listeners[0].routes[1].switch"},
		{"resilience", "ejection pct", "base_ejection_time: 1s}", "max_ejection_percent: 101}", "upstreams[0].resilience.outlier_detection.max_ejection_percent"},
		{"resilience", "max below base", "base_ejection_time: 1s}", "base_ejection_time: 10s, max_ejection_time: 1s}", "upstreams[0].resilience.outlier_detection.max_ejection_time"},
		{"resilience", "limits", "{enabled: true}", "{enabled: true, min_limit: 10, max_limit: 5}", "upstreams[0].resilience.adaptive_concurrency.max_limit"},
		{"resilience", "tolerance", "{enabled: true}", "{enabled: true, tolerance: 0.5}", "upstreams[0].resilience.adaptive_concurrency.tolerance"},
		{"resilience", "budget", "adaptive_concurrency:", "retry_budget: {budget_percent: 200}\n      adaptive_concurrency:", "upstreams[0].resilience.retry_budget.budget_percent"},
		{"resilience", "breaker", "adaptive_concurrency:", "circuit_breaker: {max_wait: -1s}\n      adaptive_concurrency:", "upstreams[0].resilience.circuit_breaker.max_wait"},
		{"resilience", "min_remaining", "adaptive_concurrency:", "min_remaining: -1ms\n      adaptive_concurrency:", "upstreams[0].resilience.min_remaining"},
		{"resilience", "reserve", "{max_in_flight: 100}", "{max_in_flight: 100, core_reserve_percent: 101}", "listeners[0].overload.core_reserve_percent"},
		{"resilience", "dup switch", "switches:\n", "switches:\n  - {name: recommend}\n", "switches[1].name"},
		{"resilience", "switch result", `{message: "feature off"}`, `{result: 70000}`, "switches[0].reply.result"},
		{"resilience", "unknown field", "{enabled: true}", "{enabled: true, bogus: 1}", "bogus"},
		{"migrate", "percent range", "percent: 5,", "percent: 101,", "listeners[0].routes[0].split.backends[1].percent"},
		{"migrate", "percent decimals", "percent: 5,", "percent: 5.001,", "listeners[0].routes[0].split.backends[1].percent"},
		{"migrate", "unknown backend", "- {upstream: g2, percent", "- {upstream: nope, percent", "listeners[0].routes[0].split.backends[1].upstream"},
		{"migrate", "dup backend", "- {upstream: g2, percent", "- {upstream: g, percent", "listeners[0].routes[0].split.backends[1].upstream"},
		{"migrate", "bad by", "split:\n", "split:\n          by: coin\n", "listeners[0].routes[0].split.by"},
		{"migrate", "base mismatch", "method: /demo.Echo/Echo\n", "method: /demo.Echo/Echo\n        upstream: g2\n", "listeners[0].routes[0].upstream"},
		{"migrate", "allow upstream", "allow: {uins", "allow: {upstream: x, uins", "listeners[0].routes[0].split.allow.upstream"},
		{"migrate", "caller upstream", "upstream: g2}]", "upstream: zz}]", "listeners[0].routes[0].split.callers[0].upstream"},
		{"migrate", "range not range", "method: /demo.EchoV2/Echo}", "method: /demo.EchoV2/Echo, uin_ranges: [{min: 1, max: 2}]}", "listeners[0].routes[0].split.backends[1].uin_ranges"},
		{"migrate", "backend method", "/demo.EchoV2/Echo", "demo", "listeners[0].routes[0].split.backends[1].method"},
		{"migrate", "method to private", "- {upstream: g2, percent: 5, method: /demo.EchoV2/Echo}", "- {upstream: p, percent: 5, method: /demo.EchoV2/Echo}", "listeners[0].routes[0].split.backends[1].method"},
		{"migrate", "shadow method", "shadow: {upstream: g2,", "shadow: {upstream: g2, method: nope,", "listeners[0].routes[0].shadow.method"},
		{"migrate", "shadow upstream", "shadow: {upstream: g2", "shadow: {upstream: gg", "listeners[0].routes[0].shadow.upstream"},
		{"migrate", "shadow queue", "ignore_ext: [32769]}", "queue: 100000}", "listeners[0].routes[0].shadow.queue"},
		{"migrate", "shadow percent", "ignore_ext: [32769]}", "percent: -1}", "listeners[0].routes[0].shadow.percent"},
		{"migrate", "shadow keep", "ignore_ext: [32769]}", "diffs: {keep: 20000}}", "listeners[0].routes[0].shadow.diffs.keep"},
		{"migrate", "window", "upstreams:\n", "migrate: {window: 1s}\nupstreams:\n", "migrate.window"},
		{"migrate", "short token", "upstreams:\n", "migrate: {token: abc}\nupstreams:\n", "migrate.token"},
		{"migrate", "token file", "upstreams:\n", "migrate: {token_file: nope.txt}\nupstreams:\n", "migrate.token_file"},
		{"migrate", "percents below 100", "- {upstream: g}", "- {upstream: g, percent: 90}", "listeners[0].routes[0].split.backends"},
		{"xds", "two endpoints", "endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///a", 127.0.0.1:9001]`, "upstreams[0].endpoints[0]: an xds:/// endpoint must be the upstream's only endpoint"},
		{"xds", "xds on private", "endpoints: [127.0.0.1:8000]", `endpoints: ["xds:///legacy"]`, "upstreams[1].endpoints[0]: xds:/// endpoints are for grpc upstreams only"},
		{"xds", "no target name", "endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///"]`, "upstreams[0].endpoints[0]: xds:/// needs a target name"},
		// wasm.config must be the plugin's JSON (a map with non-string keys is not).
		{"xdsmodel", "xds limit negative", "  address: 127.0.0.1:18000", "  address: 127.0.0.1:18000\n  limits: {max_connections: -1}", "xds.limits.max_connections: must be in [0, 1048576], got -1"},
		{"xdsmodel", "xds per-identity above total", "  address: 127.0.0.1:18000", "  address: 127.0.0.1:18000\n  limits: {max_streams: 10, max_streams_per_identity: 20}", "xds.limits.max_streams_per_identity: exceeds xds.limits.max_streams"},
		{"xdsmodel", "wasm config", "config: {allow_cmds: [1]}", "config: {allow: {1: x}}", "xds.envoy[0].listeners[0].wasm.config"},
		// A proxyless client's name is required and neither another client's nor an Envoy node's.
		{"xdsmodel", "client named as a node", "{name: bridge, route_to: {meshgate_listener: grpc_in}}", "{name: idc, route_to: {meshgate_listener: grpc_in}}", `xds.grpc_clients[0].name: duplicate name "idc"`},
		{"xdsmodel", "client without name", "{name: bridge, route_to: {meshgate_listener: grpc_in}}", "{name: '', route_to: {meshgate_listener: grpc_in}}", "xds.grpc_clients[0].name: required"},
		{"xdsmodel", "two clients one name", "{name: bridge, route_to: {meshgate_listener: grpc_in}}", "{name: bridge, route_to: {meshgate_listener: grpc_in}}\n  - {name: bridge, endpoints: [127.0.0.1:1]}", `xds.grpc_clients[1].name: duplicate name "bridge"`},
	} {
		t.Run(c.fixture+"/"+c.name, func(t *testing.T) {
			f := fixtures[c.fixture]
			wantFieldError(t, edit(t, f.y, c.from, c.to), f.dir, c.field)
		})
	}
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
