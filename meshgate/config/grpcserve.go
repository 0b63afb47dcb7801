package config

import "fmt"

// The gRPC server transport of a grpc listener (listeners[].grpc_transport).
//
//	listeners:
//	  - name: grpc-in
//	    kind: grpc
//	    address: 0.0.0.0:9090
//	    grpc_transport: direct
//
// grpc-go (the default, also when the field is empty) serves calls with
// grpc-go's server. direct serves them with MeshGate's own HTTP/2 server
// transport (package meshgate/grpcserve: one goroutine per connection, no
// writer goroutine, fewer allocations per call). It serves unary calls
// only, so it is rejected on a listener that needs a streaming service:
// a stream route (routes[].stream), the push API (push.api, whose
// Subscribe streams) or the reflection service (reflection, streaming;
// with it go the body transcoders, which need its descriptor sets).

// DirectServer reports whether the grpc listener serves calls with the
// direct HTTP/2 server transport.
func (l *Listener) DirectServer() bool {
	return l.Kind == KindGRPC && l.GRPCTransport == GRPCTransportDirect
}

// checkListenerTransport validates listeners[i].grpc_transport (f is
// "listeners[i]").
func checkListenerTransport(e *errs, f string, l *Listener) {
	field := f + ".grpc_transport"
	switch l.GRPCTransport {
	case "", GRPCTransportGRPCGo:
		return
	case GRPCTransportDirect:
	default:
		e.add(field, "must be %q or %q, got %q", GRPCTransportGRPCGo, GRPCTransportDirect, l.GRPCTransport)
		return
	}
	if l.Kind != KindGRPC {
		e.add(field, "%q is for grpc listeners only (kind is %q)", GRPCTransportDirect, l.Kind)
		return
	}
	unsupported := func(sub, what string) {
		e.add(f+"."+sub, "%s is not served by grpc_transport %q (unary calls only); use %q", what, GRPCTransportDirect, GRPCTransportGRPCGo)
	}
	for j := range l.Routes {
		if l.Routes[j].IsStream() {
			unsupported(fmt.Sprintf("routes[%d].stream", j), "a streaming route")
		}
	}
	if l.Push != nil && l.Push.API {
		unsupported("push.api", "the push API")
	}
	if l.Reflection != nil {
		unsupported("reflection", "the reflection service (and body transcoding, which needs its descriptor sets)")
	}
}
