// Package authz is MeshGate's authorization policy: which authenticated
// identity may call what.
//
// On a private listener the identity is the HMAC key id verified from the
// MGP auth extension and the action is the frame's cmd; on a grpc listener
// the identity is a SAN of the verified mTLS client certificate (a URI SAN
// such as a SPIFFE ID, or a DNS SAN) and the action is the full method
// name. A Policy is an immutable allow-list built from config.Authz;
// everything it does not allow is denied. Lookups do not allocate for key
// ids and DNS identities.
package authz

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/promreg"
)

// Policy is an immutable allow-list; the nil *Policy allows everything
// (no authz configured).
type Policy struct {
	cmds  map[uint64]struct{}   // key id<<32 | cmd
	ids   map[string]*methodSet // identity (DNS lower-cased) -> methods
	rules int
}

type methodSet struct {
	exact    map[string]struct{}
	services map[string]struct{} // "/pkg.Svc/" of "/pkg.Svc/*"
}

// New builds a policy from rules (validated by config.Validate). It
// returns nil for a nil a.
func New(a *config.Authz) *Policy {
	if a == nil {
		return nil
	}
	p := &Policy{cmds: map[uint64]struct{}{}, ids: map[string]*methodSet{}, rules: len(a.Allow)}
	for _, r := range a.Allow {
		for _, id := range r.KeyIDs {
			for _, c := range r.Cmds {
				p.cmds[uint64(id)<<32|uint64(c)] = struct{}{}
			}
		}
		for _, id := range r.Identities {
			id = canonical(id)
			ms := p.ids[id]
			if ms == nil {
				ms = &methodSet{exact: map[string]struct{}{}, services: map[string]struct{}{}}
				p.ids[id] = ms
			}
			for _, m := range r.Methods {
				if svc, ok := strings.CutSuffix(m, "*"); ok {
					ms.services[svc] = struct{}{}
				} else {
					ms.exact[m] = struct{}{}
				}
			}
		}
	}
	return p
}

// canonical lower-cases DNS identities ("dns:NAME"; DNS names are
// case-insensitive); URI identities are compared exactly.
func canonical(id string) string {
	if strings.Contains(id, "://") {
		return id
	}
	return strings.ToLower(id)
}

// AllowCmd reports whether key id may send cmd. It does not allocate.
func (p *Policy) AllowCmd(keyID, cmd uint32) bool {
	if p == nil {
		return true
	}
	_, ok := p.cmds[uint64(keyID)<<32|uint64(cmd)]
	return ok
}

// AllowMethod reports whether identity may call method (a valid full
// method name). It does not allocate for a canonical identity.
func (p *Policy) AllowMethod(identity, method string) bool {
	if p == nil {
		return true
	}
	ms := p.ids[identity]
	if ms == nil {
		if strings.Contains(identity, "://") {
			return false
		}
		if lc := strings.ToLower(identity); lc != identity {
			ms = p.ids[lc]
		}
		if ms == nil {
			return false
		}
	}
	if _, ok := ms.exact[method]; ok {
		return true
	}
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		_, ok := ms.services[method[:i+1]]
		return ok
	}
	return false
}

// AllowCert reports whether the holder of cert (a verified client
// certificate) may call method: one of its URI or DNS SANs must be allowed.
// The common name is not an identity.
func (p *Policy) AllowCert(cert *x509.Certificate, method string) bool {
	if p == nil {
		return true
	}
	if cert == nil {
		return false
	}
	for _, u := range cert.URIs {
		if p.AllowMethod(u.String(), method) {
			return true
		}
	}
	for _, d := range cert.DNSNames {
		if p.AllowMethod("dns:"+d, method) {
			return true
		}
	}
	return false
}

// Rules is the number of rules the policy was built from.
func (p *Policy) Rules() int {
	if p == nil {
		return 0
	}
	return p.rules
}

// ErrNoPeerCert is returned by PeerCert when the call did not come over TLS
// with a verified client certificate.
var ErrNoPeerCert = errors.New("authz: no verified client certificate")

// PeerCert returns the verified leaf certificate of the gRPC peer of ctx:
// the first certificate of the first verified chain, or, on MeshGate's own
// listeners (which verify in VerifyConnection, see below), the leaf the
// handshake verified.
func PeerCert(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil, ErrNoPeerCert
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, ErrNoPeerCert
	}
	if len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
		return ti.State.VerifiedChains[0][0], nil
	}
	// MeshGate's listeners (package tlsconf) verify the client chain in
	// VerifyConnection against the CA they re-read on rotation, which
	// leaves VerifiedChains empty; a handshake only completes after that
	// check passed, and config validation requires tls.ca_file wherever an
	// authz policy names identities.
	if len(ti.State.PeerCertificates) == 0 {
		return nil, ErrNoPeerCert
	}
	return ti.State.PeerCertificates[0], nil
}

// Failure reasons (label values of meshgate_auth_failures_total).
const (
	ReasonMissing        = "missing"          // no auth extension
	ReasonMalformed      = "malformed"        // auth extension malformed (connection closed)
	ReasonUnknownKey     = "unknown_key"      // key id not configured
	ReasonSkew           = "skew"             // timestamp outside ±max_skew
	ReasonBadMAC         = "bad_mac"          // HMAC mismatch
	ReasonReplay         = "replay"           // nonce already seen within the window
	ReasonNonceCacheFull = "nonce_cache_full" // memory bound reached: failing closed
	ReasonNonceKeyQuota  = "nonce_key_quota"  // this key id's share of the bound reached
	ReasonForbidden      = "forbidden"        // authenticated, but the policy denies it
	ReasonNoIdentity     = "no_identity"      // grpc: no verified client certificate
)

// Reasons lists every reason, for pre-resolving counters.
var Reasons = [...]string{ReasonMissing, ReasonMalformed, ReasonUnknownKey, ReasonSkew, ReasonBadMAC,
	ReasonReplay, ReasonNonceCacheFull, ReasonNonceKeyQuota, ReasonForbidden, ReasonNoIdentity}

// Failures returns meshgate_auth_failures_total{listener,reason},
// registered on reg (or the one already registered there); reg may be nil.
func Failures(reg prometheus.Registerer) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshgate", Name: "auth_failures_total",
		Help: "Requests refused by authentication or authorization, by listener and reason.",
	}, []string{"listener", "reason"})
	v, _ = promreg.Adopt(reg, v) // a conflicting collector: v stays unregistered
	return v
}
