package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

const authGood = `
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:7000
    auth: {keys: {1: "s1", 2: "s2"}, max_skew: 30s}
    authz:
      allow:
        - {key_ids: [1, 2], cmds: [1]}
    routes:
      - {cmd: 1, method: /demo.Echo/Echo, upstream: g}
  - name: out
    kind: grpc
    address: 127.0.0.1:7001
    tls: {cert_file: s.pem, key_file: s-key.pem, ca_file: ca.pem}
    authz:
      allow:
        - {identities: ["spiffe://example.org/ns/game/sa/web", "dns:web.game.svc"], methods: [/legacy.L/Get, /legacy.L/*]}
    routes:
      - {method: /legacy.L/*, cmd: 1, upstream: p}
upstreams:
  - {name: g, protocol: grpc, endpoints: [127.0.0.1:9000]}
  - {name: p, protocol: private, endpoints: [127.0.0.1:8000]}
`

func TestAuthDefaults(t *testing.T) {
	c, err := Parse([]byte(authGood), "")
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Listeners[0].Auth.MaxNonces; n != 600_000 {
		t.Fatalf("default max_nonces %d, want 600000 (10k rps × 2 × 30s)", n)
	}
	if n := c.Listeners[0].Auth.MaxNoncesPerKey; n != 300_000 {
		t.Fatalf("default max_nonces_per_key %d, want half of max_nonces with two keys", n)
	}
	if DefaultMaxNoncesPerKey(10, 1) != 10 {
		t.Fatal("one key gets the whole bound")
	}
	if DefaultMaxNonces(time.Second) != 20_000 || DefaultMaxNonces(time.Millisecond) != DefaultNonceRate || DefaultMaxNonces(MaxMaxSkew) != 12_000_000 {
		t.Fatal("DefaultMaxNonces")
	}
}

// TestAuthErrorsNameTheField: every bad auth or authz setting is rejected
// naming its YAML path.
func TestAuthErrorsNameTheField(t *testing.T) {
	cases := map[string]fieldCase{
		"unknown key id":         {"key_ids: [1, 2]", "key_ids: [1, 9]", "listeners[0].authz.allow[0].key_ids[1]"},
		"no key ids":             {"key_ids: [1, 2], ", "", "listeners[0].authz.allow[0].key_ids"},
		"no cmds":                {", cmds: [1]", "", "listeners[0].authz.allow[0].cmds"},
		"methods on private":     {"cmds: [1]}", "cmds: [1], methods: [/a.B/C]}", "listeners[0].authz.allow[0].methods"},
		"identities on private":  {"cmds: [1]}", "cmds: [1], identities: [\"dns:a.b\"]}", "listeners[0].authz.allow[0].identities"},
		"authz without auth":     {"    auth: {keys: {1: \"s1\", 2: \"s2\"}, max_skew: 30s}\n", "", "listeners[0].authz"},
		"empty allow":            {"        - {key_ids: [1, 2], cmds: [1]}\n", "", "listeners[0].authz.allow"},
		"negative max_skew":      {"max_skew: 30s", "max_skew: -1s", "listeners[0].auth.max_skew"},
		"huge max_skew":          {"max_skew: 30s", "max_skew: 1h", "listeners[0].auth.max_skew"},
		"negative max_nonces":    {"max_skew: 30s", "max_skew: 30s, max_nonces: -1", "listeners[0].auth.max_nonces"},
		"per key above total":    {"max_skew: 30s", "max_skew: 30s, max_nonces: 10, max_nonces_per_key: 11", "listeners[0].auth.max_nonces_per_key"},
		"empty secret":           {`2: "s2"`, `2: ""`, "listeners[0].auth.keys[2]"},
		"bad method pattern":     {"/legacy.L/Get,", "/legacy.L/Get/x,", "listeners[1].authz.allow[0].methods[0]"},
		"wildcard method prefix": {"/legacy.L/*]", "/legacy.*]", "listeners[1].authz.allow[0].methods[1]"},
		"bad identity":           {"dns:web.game.svc", "dns:web..svc", "listeners[1].authz.allow[0].identities[1]"},
		"wildcard identity":      {"dns:web.game.svc", "dns:*.game.svc", "listeners[1].authz.allow[0].identities[1]"},
		"uri without host":       {"spiffe://example.org/ns/game/sa/web", "spiffe:///web", "listeners[1].authz.allow[0].identities[0]"},
		"no identities":          {"identities: [\"spiffe://example.org/ns/game/sa/web\", \"dns:web.game.svc\"], ", "", "listeners[1].authz.allow[0].identities"},
		"key ids on grpc":        {"methods: [/legacy.L/Get, /legacy.L/*]}", "methods: [/legacy.L/Get], key_ids: [1]}", "listeners[1].authz.allow[0].key_ids"},
		"authz without mtls":     {", ca_file: ca.pem}", "}", "listeners[1].authz"},
		"auth on grpc":           {"    tls: {cert_file", "    auth: {keys: {1: x}}\n    tls: {cert_file", "listeners[1].auth"},
		"auth on other codec":    {"kind: private\n", "kind: private\n    codec: le\n", "listeners[0].auth"},
	}
	wantFieldErrors(t, authGood, "", cases)
}

func TestCheckIdentity(t *testing.T) {
	for id, ok := range map[string]bool{
		"spiffe://td/ns/a/sa/b": true, "dns:web.svc": true, "dns:Web-1.svc": true, "dns:a": true, "web.svc": false,
		"": false, "spiffe://": false, "dns:*.svc": false, "dns:a b": false, "dns:a..b": false, "dns:a_b.svc": false, "dns:": false,
		"spiffe://td/a b": false, "spiffe://TD/x": false, "spiffe://td/a/../b": false, "spiffe://td/x?y=1": false,
		"https://id.example/svc": true,
	} {
		if err := CheckIdentity(id); (err == nil) != ok {
			t.Errorf("CheckIdentity(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

// TestAuthDocExample keeps the example in docs/security-auth.md valid.
func TestAuthDocExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/security-auth.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "```yaml\n")
	if i < 0 {
		t.Fatal("no yaml block")
	}
	body := s[i+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	c, err := Parse([]byte(body), "")
	if err != nil {
		t.Fatalf("docs example does not validate: %v", err)
	}
	if c.Listeners[0].Authz == nil || len(c.Listeners[1].Authz.Allow) != 2 {
		t.Fatal("example policies not parsed")
	}
}
