package config

import "strings"

// XDSScheme prefixes a gRPC upstream endpoint that is resolved by an xDS control plane
// (istiod, or MeshGate's own) through grpc-go's xDS resolver instead of a static list:
//
//	upstreams:
//	  - name: user-svc
//	    protocol: grpc
//	    endpoints: ["xds:///user-svc.game.svc.cluster.local:9000"]
//
// The control plane then owns endpoints and load balancing (e.g. an Istio DestinationRule's
// consistentHash); the xDS bootstrap comes from GRPC_XDS_BOOTSTRAP or
// GRPC_XDS_BOOTSTRAP_CONFIG. Such an endpoint must be the upstream's only one.
const XDSScheme = "xds:///"

// IsXDSTarget reports whether an endpoint is an xds:/// target.
func IsXDSTarget(ep string) bool { return strings.HasPrefix(ep, XDSScheme) }

func checkXDSEndpoint(e *errs, field string, u *Upstream) {
	switch {
	case u.Protocol != ProtoGRPC:
		e.add(field, "xds:/// endpoints are for grpc upstreams only")
	case len(u.Endpoints) != 1:
		e.add(field, "an xds:/// endpoint must be the upstream's only endpoint")
	case len(u.Endpoints[0]) == len(XDSScheme):
		e.add(field, "xds:/// needs a target name")
	}
}
