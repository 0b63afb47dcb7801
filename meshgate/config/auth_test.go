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
