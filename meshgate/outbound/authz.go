package outbound

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
)

// gate is a grpc listener's authorization: the policy from the listener's
// authz section and its failure counters. A nil *gate allows every call.
type gate struct {
	p                   *authz.Policy
	forbidden, noPeerID prometheus.Counter
}

// newGate builds l's gate; nil when l has no authz section.
func newGate(l config.Listener, fails *prometheus.CounterVec) *gate {
	if l.Authz == nil {
		return nil
	}
	return &gate{
		p:         authz.New(l.Authz),
		forbidden: fails.WithLabelValues(l.Name, authz.ReasonForbidden),
		noPeerID:  fails.WithLabelValues(l.Name, authz.ReasonNoIdentity),
	}
}

// authorize lets the call through when the verified client certificate of
// its peer holds an identity the policy allows method for. Otherwise the
// call fails with PERMISSION_DENIED before any upstream is touched.
func (g *gate) authorize(ctx context.Context, method string) error {
	if g == nil {
		return nil
	}
	cert, err := authz.PeerCert(ctx)
	if err != nil {
		g.noPeerID.Inc()
		return status.Error(codes.PermissionDenied, "outbound: permission denied: no verified client certificate")
	}
	if !g.p.AllowCert(cert, method) {
		g.forbidden.Inc()
		return status.Errorf(codes.PermissionDenied, "outbound: permission denied for %s", method)
	}
	return nil
}
