package config

import "slices"

// gRPC client transports of a grpc upstream (upstreams[].grpc_transport).
//
//	upstreams:
//	  - name: user-svc
//	    protocol: grpc
//	    endpoints: ["10.0.0.7:9000"]
//	    grpc_transport: grpc-go   # opt out of the default direct transport
//
// direct (the default for a grpc upstream with static endpoints, also when
// the field is empty) sends unary calls over MeshGate's own HTTP/2 client
// (package meshgate/grpcdirect: fewer goroutine hand-offs and allocations
// per call); streaming routes still use grpc-go. grpc-go makes every call
// with grpc-go's client; it is the only transport of an xds:/// target
// (resolved and balanced by grpc-go's xDS support), whatever the field
// says when it is empty.
const (
	GRPCTransportGRPCGo = "grpc-go"
	GRPCTransportDirect = "direct"
)

// DirectTransport reports whether the upstream's unary calls use the
// direct HTTP/2 transport: a grpc upstream with grpc_transport direct, or
// empty and static endpoints.
func (u *Upstream) DirectTransport() bool {
	if u.Protocol != ProtoGRPC {
		return false
	}
	switch u.GRPCTransport {
	case GRPCTransportDirect:
		return true
	case "":
		return !slices.ContainsFunc(u.Endpoints, IsXDSTarget)
	}
	return false
}

// checkGRPCTransport validates upstreams[i].grpc_transport (f is
// "upstreams[i]").
func checkGRPCTransport(e *errs, f string, u *Upstream) {
	field := f + ".grpc_transport"
	switch u.GRPCTransport {
	case "", GRPCTransportGRPCGo:
	case GRPCTransportDirect:
		if u.Protocol != ProtoGRPC {
			e.add(field, "%q is for grpc upstreams only (protocol is %q)", GRPCTransportDirect, u.Protocol)
		}
		for _, ep := range u.Endpoints {
			if IsXDSTarget(ep) {
				e.add(field, "%q needs static endpoints; an xds:/// target is resolved and balanced by grpc-go: use %q", GRPCTransportDirect, GRPCTransportGRPCGo)
				break
			}
		}
	default:
		e.add(field, "must be %q or %q, got %q", GRPCTransportGRPCGo, GRPCTransportDirect, u.GRPCTransport)
	}
}
