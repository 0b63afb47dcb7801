package outbound

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/shadow"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// routeMig is a route's migration control (docs/migration.md): on a split
// route, Rule picks one of Sides (full routes to each backend, counted in
// the request metrics under their own upstream); every side (or the route
// itself, unsplit) may mirror.
type routeMig = migrate.Wiring[Route]

// pick returns the route that serves a call: the split's chosen side (by
// x-mgp-uin and x-mgp-caller), or r itself.
func (r *Route) pick(ctx context.Context) *Route {
	if r.mig == nil || r.mig.Rule == nil {
		return r
	}
	var uin uint64
	var caller string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md[mapping.MDUIN]; len(v) > 0 {
			uin, _ = strconv.ParseUint(v[0], 10, 64)
		}
		if v := md[mapping.MDCaller]; len(v) > 0 {
			caller = v[0]
		}
	}
	k, _ := r.mig.Rule.Pick(uin, caller)
	return r.mig.Sides[k]
}

// applyMigration resolves migration control for every route of t (built
// from l without error, so t.routes[i] is l.Routes[i]) and registers it
// with the staging generation.
func (s *Server) applyMigration(t *table, l config.Listener, set upstream.Set) error {
	if s.mig == nil {
		return nil
	}
	ids := config.RouteIDs(&l)
	for j := range l.Routes {
		rc, r := &l.Routes[j], t.routes[j]
		f := fmt.Sprintf("listeners[%s].routes[%d]", l.Name, j)
		mig, err := migrate.WireRoute(s.mig, migrate.RouteSpec[Route]{
			Info:   migrate.Route{ID: ids[j], Listener: l.Name, Upstream: r.Upstream, Label: r.Method},
			Config: rc, Field: f, Err: ErrConfig,
			ShadowCaller: func(sh *config.Shadow) shadow.Caller {
				switch p, g := set.Private[sh.Upstream], set.GRPC[sh.Upstream]; {
				case g != nil:
					return migrate.GRPCShadow(g, sh.Method)
				case p != nil:
					cmd := sh.Cmd
					if cmd == 0 {
						cmd = rc.Cmd
					}
					return migrate.PrivateShadow(p, cmd)
				}
				return nil
			},
			Side: func(k int, b config.SplitBackend, mirror *routeMig) (*Route, error) {
				side := *r
				side.Pool, side.GRPC, side.Upstream = set.Private[b.Upstream], set.GRPC[b.Upstream], b.Upstream
				switch {
				case side.GRPC != nil:
					side.CallMethod = b.Method
					if k == 0 && b.Method == "" {
						side.CallMethod = rc.RewriteMethod
					}
					side.Oneway = false
				case side.Pool != nil:
					if b.Cmd != 0 {
						side.Cmd = b.Cmd
					}
					if side.Cmd == 0 {
						return nil, fmt.Errorf("%w: %s.split.backends[%d].cmd: required for private upstream %q", ErrConfig, f, k, b.Upstream)
					}
				default:
					return nil, nil // WireRoute reports the missing upstream
				}
				side.m = s.m.Route(l.Name, r.Method, b.Upstream)
				side.mig = mirror
				return &side, nil
			},
		})
		if err != nil {
			return err
		}
		r.mig = mig
	}
	return nil
}

// shadowRequest is the shadow copy of a call: f is the request frame as
// built for a private upstream, or nil (then uin, caller and application
// extensions are read from the call's metadata).
func shadowRequest(ctx context.Context, method string, body []byte, f *codec.Frame, oneway bool) shadow.Request {
	req := shadow.Request{Method: method, Body: body, Oneway: oneway}
	var mf codec.Frame
	if f == nil {
		if md, ok := metadata.FromIncomingContext(ctx); ok && mapping.RequestFrame(md, &mf) == nil {
			f = &mf
		}
	}
	if f != nil {
		req.UIN, req.Cmd, req.Ext = f.UIN, f.Cmd, f.Ext
		for i := range f.Ext {
			if f.Ext[i].Key == codec.ExtCaller {
				req.Caller = string(f.Ext[i].Value)
			}
		}
	}
	return req
}
