package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Auth and authorization limits and defaults.
const (
	// MaxMaxSkew is the largest accepted auth.max_skew.
	MaxMaxSkew = 10 * time.Minute
	// DefaultNonceRate is the request rate (per second) the default
	// auth.max_nonces is sized for: every nonce is remembered for up to
	// 2×max_skew, so the default is DefaultNonceRate × 2 × max_skew.
	DefaultNonceRate = 10_000
	// MaxMaxNonces caps auth.max_nonces (about 3 GB of nonces).
	MaxMaxNonces = 50_000_000
)

// Authz is a listener's authorization policy: an allow-list. A request
// whose identity and command (private listener) or method (grpc listener)
// no rule allows is answered with result 4 / PERMISSION_DENIED and never
// reaches an upstream. Without an authz section every authenticated caller
// may call every route.
type Authz struct {
	// Allow lists the rules; a request is allowed when one rule matches.
	Allow []AuthzRule `yaml:"allow" json:"allow"`
}

// AuthzRule grants identities some commands or methods.
//
// On a private listener (auth required) a rule names HMAC KeyIDs and the
// Cmds they may send. On a grpc listener (mTLS required: tls.ca_file) a rule
// names peer certificate Identities — a URI SAN such as
// "spiffe://example.org/ns/game/sa/web" (any value containing "://") or a
// DNS SAN such as "web.game.svc" — and the Methods they may call, exact
// ("/pkg.Svc/Method") or a whole service ("/pkg.Svc/*").
type AuthzRule struct {
	KeyIDs     []uint32 `yaml:"key_ids,omitempty" json:"key_ids,omitempty"`
	Cmds       []uint32 `yaml:"cmds,omitempty" json:"cmds,omitempty"`
	Identities []string `yaml:"identities,omitempty" json:"identities,omitempty"`
	Methods    []string `yaml:"methods,omitempty" json:"methods,omitempty"`
}

// DefaultMaxNonces is the default auth.max_nonces for skew.
func DefaultMaxNonces(skew time.Duration) int {
	n := int(DefaultNonceRate * 2 * skew / time.Second)
	return min(max(n, DefaultNonceRate), MaxMaxNonces)
}

// DefaultMaxNoncesPerKey is the default auth.max_nonces_per_key: half of
// maxNonces when there are several keys (so one key holder cannot fill the
// replay cache for the others), all of it with one key.
func DefaultMaxNoncesPerKey(maxNonces, keys int) int {
	if keys > 1 {
		return max(maxNonces/2, 1)
	}
	return maxNonces
}

// applyAuthDefaults fills auth.max_nonces and auth.max_nonces_per_key
// (after auth.max_skew).
func applyAuthDefaults(l *Listener) {
	a := l.Auth
	if a == nil {
		return
	}
	if a.MaxNonces == 0 && a.MaxSkew > 0 {
		a.MaxNonces = DefaultMaxNonces(a.MaxSkew)
	}
	if a.MaxNoncesPerKey == 0 && a.MaxNonces > 0 {
		a.MaxNoncesPerKey = DefaultMaxNoncesPerKey(a.MaxNonces, len(a.Keys))
	}
}

// validateAuth checks listener l's auth and authz sections; f is the
// listener's path ("listeners[2]").
func validateAuth(e *errs, f string, l *Listener) {
	if a := l.Auth; a != nil {
		if l.Kind == KindGRPC {
			e.add(f+".auth", "HMAC auth applies to private listeners; a grpc listener authenticates peers with mTLS (tls.ca_file)")
		}
		if l.Kind == KindPrivate && l.Codec != "" && l.Codec != "mgp" {
			e.add(f+".auth", "HMAC auth needs codec mgp, not %q", l.Codec)
		}
		if a.MaxSkew < 0 || a.MaxSkew > MaxMaxSkew {
			e.add(f+".auth.max_skew", "must be in (0, %s], got %s", MaxMaxSkew, a.MaxSkew)
		}
		if a.MaxNonces < 0 || a.MaxNonces > MaxMaxNonces {
			e.add(f+".auth.max_nonces", "must be in [1, %d], got %d", MaxMaxNonces, a.MaxNonces)
		} else if a.MaxNoncesPerKey < 0 || a.MaxNoncesPerKey > a.MaxNonces {
			e.add(f+".auth.max_nonces_per_key", "must be in [1, max_nonces = %d], got %d", a.MaxNonces, a.MaxNoncesPerKey)
		}
		for id, k := range a.Keys {
			if k == "" {
				e.add(fmt.Sprintf("%s.auth.keys[%d]", f, id), "empty secret")
			}
		}
	}
	z := l.Authz
	if z == nil {
		return
	}
	zf := f + ".authz"
	switch l.Kind {
	case KindPrivate:
		if l.Auth == nil {
			e.add(zf, "needs auth (HMAC keys) on this listener: authorization is by key id")
		}
	case KindGRPC:
		if l.TLS == nil || l.TLS.CAFile == "" {
			e.add(zf, "needs mTLS on this listener (tls.ca_file): authorization is by client certificate identity")
		}
	}
	checkListed(e, zf+".allow", len(z.Allow), "rule")
	for i, r := range z.Allow {
		rf := fmt.Sprintf("%s.allow[%d]", zf, i)
		if l.Kind == KindGRPC {
			validateGRPCRule(e, rf, r)
			continue
		}
		checkUnused(e, rf+".identities", len(r.Identities), "applies to grpc listeners; a private listener authorizes key_ids")
		checkUnused(e, rf+".methods", len(r.Methods), "applies to grpc listeners; a private listener authorizes cmds")
		checkListed(e, rf+".key_ids", len(r.KeyIDs), "key id")
		for j, id := range r.KeyIDs {
			if l.Auth != nil {
				if _, ok := l.Auth.Keys[id]; !ok {
					e.add(fmt.Sprintf("%s.key_ids[%d]", rf, j), "unknown key id %d (not in auth.keys)", id)
				}
			}
		}
		checkListed(e, rf+".cmds", len(r.Cmds), "cmd")
	}
}

func validateGRPCRule(e *errs, rf string, r AuthzRule) {
	checkUnused(e, rf+".key_ids", len(r.KeyIDs), "applies to private listeners; a grpc listener authorizes identities")
	checkUnused(e, rf+".cmds", len(r.Cmds), "applies to private listeners; a grpc listener authorizes methods")
	checkListed(e, rf+".identities", len(r.Identities), "identity")
	for j, id := range r.Identities {
		if err := CheckIdentity(id); err != nil {
			e.add(fmt.Sprintf("%s.identities[%d]", rf, j), "%v", err)
		}
	}
	checkListed(e, rf+".methods", len(r.Methods), "method")
	for j, m := range r.Methods {
		if err := CheckMethod(m, true); err != nil {
			e.add(fmt.Sprintf("%s.methods[%d]", rf, j), "%v", err)
		}
	}
}

// CheckIdentity validates a peer identity, the one syntax of authz rules
// and xDS node identities: a URI SAN ("spiffe://trust.domain/path",
// compared exactly) or a DNS SAN written "dns:NAME" (compared
// case-insensitively). Wildcards are not supported.
func CheckIdentity(id string) error {
	if id == "" {
		return fmt.Errorf("empty identity")
	}
	if strings.ContainsAny(id, "*\x00 \t\r\n") {
		return fmt.Errorf("%q: wildcards and whitespace are not allowed", id)
	}
	if strings.HasPrefix(id, "spiffe://") {
		// SPIFFE IDs have stricter rules than URIs (lower-case trust
		// domain, no query, no empty or dot segments): go-spiffe checks them.
		if _, err := spiffeid.FromString(id); err != nil {
			return fmt.Errorf("%q: %v", id, err)
		}
		return nil
	}
	if strings.Contains(id, "://") {
		u, err := url.Parse(id)
		if err != nil {
			return fmt.Errorf("%q: %v", id, err)
		}
		if u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("%q: a URI identity needs a scheme and a host (spiffe://trust.domain/...)", id)
		}
		if u.String() != id {
			return fmt.Errorf("%q: not in canonical form (%q)", id, u.String())
		}
		return nil
	}
	name, ok := strings.CutPrefix(id, "dns:")
	if !ok {
		return fmt.Errorf("%q: want \"dns:NAME\" or a URI SAN such as spiffe://trust.domain/path", id)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q: not a DNS name", id)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q: not a DNS name", id)
			}
		}
	}
	return nil
}
