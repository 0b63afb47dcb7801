package config

// gRPC client transports of a grpc upstream (upstreams[].grpc_transport).
//
//	upstreams:
//	  - name: user-svc
//	    protocol: grpc
//	    endpoints: ["10.0.0.7:9000"]
//	    grpc_transport: direct
//
// grpc-go (the default, also when the field is empty) makes calls with
// grpc-go's client. direct sends unary calls over MeshGate's own HTTP/2
// client (package meshgate/grpcdirect: fewer goroutine hand-offs and
// allocations per call); streaming routes still use grpc-go. direct needs
// static endpoints (not an xds:/// target).
const (
	GRPCTransportGRPCGo = "grpc-go"
	GRPCTransportDirect = "direct"
)

// DirectTransport reports whether the upstream's unary calls use the
// direct HTTP/2 transport.
func (u *Upstream) DirectTransport() bool {
	return u.Protocol == ProtoGRPC && u.GRPCTransport == GRPCTransportDirect
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
