package config

// The gRPC server transport of a grpc listener (listeners[].grpc_transport).
//
//	listeners:
//	  - name: grpc-in
//	    kind: grpc
//	    address: 0.0.0.0:9090
//	    grpc_transport: grpc-go   # opt out of the default direct transport
//
// direct (the default, also when the field is empty) serves the listener
// with MeshGate's own HTTP/2 server transport (package meshgate/grpcserve):
// unary routes and the health service's Check on its fast path (one
// goroutine per connection, no writer goroutine, fewer allocations per
// call); every other stream — stream routes (routes[].stream), the push
// API (push.api), the reflection service, health Watch, unknown methods —
// is delegated to the listener's grpc-go server (its http.Handler), which
// serves it as with grpc-go. grpc-go serves every call with grpc-go's
// server: for a behaviour only grpc-go's own HTTP/2 transport has (its
// server-side OpenTelemetry metrics of unary calls, telemetry.grpc_metrics,
// until the direct transport records them; its BDP-based window sizing).

// DirectServer reports whether the grpc listener serves calls with the
// direct HTTP/2 server transport (grpc_transport direct, or empty: the
// default).
func (l *Listener) DirectServer() bool {
	return l.Kind == KindGRPC && l.GRPCTransport != GRPCTransportGRPCGo
}

// checkListenerTransport validates listeners[i].grpc_transport (f is
// "listeners[i]").
func checkListenerTransport(e *errs, f string, l *Listener) {
	field := f + ".grpc_transport"
	switch l.GRPCTransport {
	case "", GRPCTransportGRPCGo, GRPCTransportDirect:
	default:
		e.add(field, "must be %q or %q, got %q", GRPCTransportGRPCGo, GRPCTransportDirect, l.GRPCTransport)
		return
	}
	if l.GRPCTransport == GRPCTransportDirect && l.Kind != KindGRPC {
		e.add(field, "%q is for grpc listeners only (kind is %q)", GRPCTransportDirect, l.Kind)
	}
}
