package config

// RouteRewrite changes what a route sends upstream; inlined into Route.
type RouteRewrite struct {
	// RewriteCmd is the cmd sent to a private upstream from a private
	// listener (private → private); 0 keeps the request's cmd.
	RewriteCmd uint32 `yaml:"rewrite_cmd,omitempty" json:"rewrite_cmd,omitempty"`
	// RewriteMethod is the method called on a grpc upstream from a grpc
	// listener (gRPC → gRPC); "" keeps the called method.
	RewriteMethod string `yaml:"rewrite_method,omitempty" json:"rewrite_method,omitempty"`
}

// checkRouteTarget checks a route against its listener kind and its
// upstream's protocol: any listener may route to any upstream, and what
// the route needs follows from the pair.
//
//	private listener → grpc upstream     method required
//	private listener → private upstream  method must be empty; rewrite_cmd optional
//	grpc listener    → private upstream  method (match) required; cmd sent; oneway allowed
//	grpc listener    → grpc upstream     method (match) required; rewrite_method optional; no cmd, no oneway
//
// body.format json converts between the two protocols' bodies: it is
// refused on the passthrough pairs (private → private, grpc → grpc).
func checkRouteTarget(e *errs, rf, kind string, r Route, u *Upstream) {
	if u == nil {
		return
	}
	if r.Body != nil && r.Body.Format == BodyJSON && ((kind == KindPrivate) == (u.Protocol == ProtoPrivate)) {
		e.add(rf+".body", "format json only on a route that converts between protocols; %s listener → %s upstream %q passes bodies through unchanged", kind, u.Protocol, r.Upstream)
	}
	switch kind {
	case KindPrivate:
		if u.Protocol == ProtoGRPC {
			if err := CheckMethod(r.Method, false); err != nil {
				e.add(rf+".method", "%v (a private listener's route to grpc upstream %q names the method to call)", err, r.Upstream)
			}
		} else if r.Method != "" {
			e.add(rf+".method", "not used with private upstream %q (the frame is proxied; rewrite_cmd changes its cmd)", r.Upstream)
		}
		if r.RewriteCmd != 0 && u.Protocol != ProtoPrivate {
			e.add(rf+".rewrite_cmd", "only for a private upstream; %q speaks %s", r.Upstream, u.Protocol)
		}
		if r.RewriteMethod != "" {
			e.add(rf+".rewrite_method", "only on a %s listener routing to a grpc upstream", KindGRPC)
		}
	case KindGRPC:
		if err := CheckMethod(r.Method, true); err != nil {
			e.add(rf+".method", "%v", err)
		}
		if r.RewriteCmd != 0 {
			e.add(rf+".rewrite_cmd", "only on a %s listener routing to a private upstream (a grpc listener's route names cmd)", KindPrivate)
		}
		if u.Protocol == ProtoGRPC {
			if r.Cmd != 0 {
				e.add(rf+".cmd", "not used with grpc upstream %q (the call is proxied; rewrite_method changes its method)", r.Upstream)
			}
			if r.Oneway {
				e.add(rf+".oneway", "only for a private upstream; %q speaks grpc", r.Upstream)
			}
			if r.RewriteMethod != "" {
				if err := CheckMethod(r.RewriteMethod, false); err != nil {
					e.add(rf+".rewrite_method", "%v", err)
				} else if len(r.Method) > 0 && r.Method[len(r.Method)-1] == '*' {
					e.add(rf+".rewrite_method", "cannot rewrite a wildcard route %q to one method", r.Method)
				}
			}
		} else if r.RewriteMethod != "" {
			e.add(rf+".rewrite_method", "only for a grpc upstream; %q speaks %s", r.Upstream, u.Protocol)
		}
	}
}

// WithDefaults returns u with every unset field at its default: the one
// place upstream defaults are applied (ApplyDefaults uses it; the pools
// take the result as given and reject unset fields).
func (u Upstream) WithDefaults() Upstream {
	if u.Protocol == ProtoPrivate && u.Codec == "" {
		u.Codec = "mgp"
	}
	setDefault(&u.LB, LBRoundRobin)
	setDefault(&u.Connections, DefaultConnections)
	setDefault(&u.MaxInFlight, DefaultMaxInFlight)
	setDefault(&u.Heartbeat, DefaultHeartbeat)
	return u
}
