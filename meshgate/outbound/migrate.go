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
	"github.com/meshgate/meshgate/meshgate/split"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// routeMig is a route's migration control (docs/migration.md): on a split
// route, rule picks one of sides (full routes to each backend, counted in
// the request metrics under their own upstream); every side (or the route
// itself, unsplit) may mirror.
type routeMig struct {
	rule   *split.Rule
	sides  []*Route
	mirror *shadow.Mirror
}

// pick returns the route that serves a call: the split's chosen side (by
// x-mgp-uin and x-mgp-caller), or r itself.
func (r *Route) pick(ctx context.Context) *Route {
	if r.mig == nil || r.mig.rule == nil {
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
	k, _ := r.mig.rule.Pick(uin, caller)
	return r.mig.sides[k]
}

// applyMigration resolves migration control for every route of t (built
// from l without error, so t.routes[i] is l.Routes[i]) and registers it
// with the staging generation.
func (s *Server) applyMigration(t *table, l config.Listener, set upstream.Set) error {
	if s.mig == nil {
		return nil
	}
	gen := s.mig.Staging()
	ids := config.RouteIDs(&l)
	for j := range l.Routes {
		rc, r, id := &l.Routes[j], t.routes[j], ids[j]
		f := fmt.Sprintf("listeners[%s].routes[%d]", l.Name, j)
		var mirror *shadow.Mirror
		info := migrate.Route{ID: id, Listener: l.Name, Upstream: r.Upstream, Label: r.Method}
		if sh := rc.Shadow; sh != nil {
			var caller shadow.Caller
			switch p, g := set.Private[sh.Upstream], set.GRPC[sh.Upstream]; {
			case g != nil:
				caller = migrate.GRPCShadow(g, sh.Method)
			case p != nil:
				cmd := sh.Cmd
				if cmd == 0 {
					cmd = rc.Cmd
				}
				caller = migrate.PrivateShadow(p, cmd)
			default:
				return fmt.Errorf("%w: %s.shadow.upstream: no upstream %q", ErrConfig, f, sh.Upstream)
			}
			mirror = s.mig.Mirror(id, sh, caller)
			gen.AddMirror(mirror)
			info.Shadow = sh.Upstream
		}
		if rc.Split == nil {
			if mirror != nil {
				r.mig = &routeMig{mirror: mirror}
			}
			gen.Add(info)
			continue
		}
		rule, err := s.mig.Rule(id, rc.Split)
		if err != nil {
			return fmt.Errorf("%w: %s.split: %w", ErrConfig, f, err)
		}
		rm := &routeMig{rule: rule}
		for k, b := range rc.Split.Backends {
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
					return fmt.Errorf("%w: %s.split.backends[%d].cmd: required for private upstream %q", ErrConfig, f, k, b.Upstream)
				}
			default:
				return fmt.Errorf("%w: %s.split.backends[%d].upstream: no upstream %q", ErrConfig, f, k, b.Upstream)
			}
			side.m = s.m.Route(l.Name, r.Method, b.Upstream)
			side.mig = nil
			if mirror != nil {
				side.mig = &routeMig{mirror: mirror}
			}
			rm.sides = append(rm.sides, &side)
		}
		r.mig = rm
		info.Rule = rule
		gen.Add(info)
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
