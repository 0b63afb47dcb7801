package inbound

import (
	"bytes"
	"fmt"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/shadow"
	"github.com/meshgate/meshgate/meshgate/split"
)

// TableOption adds to what TableFromConfig resolves.
type TableOption func(*tableOptions)

type tableOptions struct {
	mig *migrate.Controller
}

// WithMigration resolves migration control for every route (docs/migration.md):
// splits (each backend a full route of its own protocol, counted in the
// request metrics under its own upstream) and shadows, registered with c's
// staging generation.
func WithMigration(c *migrate.Controller) TableOption {
	return func(o *tableOptions) { o.mig = c }
}

// routeMig is a route's migration control. On a split route, rule picks
// one of sides (full routes to each backend); every side (or the route
// itself, unsplit) may mirror.
type routeMig struct {
	rule   *split.Rule
	sides  []*Route
	mirror *shadow.Mirror
}

// pick returns the route that serves request f: the split's chosen side,
// or r itself. Allocation-free.
func (r *Route) pick(f *codec.Frame) *Route {
	if r.mig == nil || r.mig.rule == nil {
		return r
	}
	var caller []byte
	for i := range f.Ext {
		if f.Ext[i].Key == codec.ExtCaller {
			caller = f.Ext[i].Value
			break
		}
	}
	k, _ := r.mig.rule.PickBytes(f.UIN, caller)
	return r.mig.sides[k]
}

func applyTableOptions(t *Table, l *config.Listener, upstream func(string) Target, metrics *admin.Metrics, opts []TableOption) error {
	var o tableOptions
	for _, fn := range opts {
		fn(&o)
	}
	if o.mig == nil {
		return nil
	}
	gen := o.mig.Staging()
	ids := config.RouteIDs(l)
	seen := map[uint32]int{}
	for j := range l.Routes {
		rc := &l.Routes[j]
		r := t.byCmd[rc.Cmd][seen[rc.Cmd]]
		seen[rc.Cmd]++
		id := ids[j]
		f := fmt.Sprintf("listener %s: routes[%d]", l.Name, j)
		var mirror *shadow.Mirror
		if sh := rc.Shadow; sh != nil {
			u := upstream(sh.Upstream)
			var caller shadow.Caller
			switch {
			case u.GRPC != nil:
				m := sh.Method
				if m == "" {
					m = rc.Method
				}
				caller = migrate.GRPCShadow(u.GRPC, m)
			case u.Private != nil:
				caller = migrate.PrivateShadow(u.Private, sh.Cmd)
			default:
				return fmt.Errorf("%w: %s.shadow.upstream: no upstream %q", config.ErrInvalid, f, sh.Upstream)
			}
			mirror = o.mig.Mirror(id, sh, caller)
			gen.AddMirror(mirror)
		}
		info := migrate.Route{ID: id, Listener: l.Name, Upstream: r.UpstreamName, Label: routeLabel(r)}
		if sh := rc.Shadow; sh != nil {
			info.Shadow = sh.Upstream
		}
		if rc.Split == nil {
			if mirror != nil {
				r.mig = &routeMig{mirror: mirror}
			}
			gen.Add(info)
			continue
		}
		rule, err := o.mig.Rule(id, rc.Split)
		if err != nil {
			return fmt.Errorf("%w: %s.split: %w", config.ErrInvalid, f, err)
		}
		rm := &routeMig{rule: rule}
		for k, b := range rc.Split.Backends {
			u := upstream(b.Upstream)
			side := *r
			side.Upstream, side.Private, side.UpstreamName, side.Guard = u.GRPC, u.Private, b.Upstream, u.Guard
			switch {
			case u.GRPC != nil:
				if b.Method != "" {
					side.Method = b.Method
				}
				if side.Method == "" {
					return fmt.Errorf("%w: %s.split.backends[%d].method: required for grpc upstream %q", config.ErrInvalid, f, k, b.Upstream)
				}
			case u.Private != nil:
				side.SendCmd = r.Cmd
				if b.Cmd != 0 {
					side.SendCmd = b.Cmd
				} else if k == 0 && rc.RewriteCmd != 0 {
					side.SendCmd = rc.RewriteCmd
				}
			default:
				return fmt.Errorf("%w: %s.split.backends[%d].upstream: no upstream %q", config.ErrInvalid, f, k, b.Upstream)
			}
			side.m = metrics.Route(l.Name, info.Label, b.Upstream)
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

// mirrorState is a request's shadow decision, made before the call (a gRPC
// call takes the request buffer).
type mirrorState struct {
	want bool
	body []byte
}

func (q *request) mirrorBefore() {
	q.mirr = mirrorState{want: q.r.mig.mirror != nil && q.r.mig.mirror.Want(q.oneway)}
	if q.mirr.want && q.r.Private == nil {
		q.mirr.body = bytes.Clone(q.req.Bytes())
	}
}

// mirror hands the shadow its copy of the request and the primary's
// reply; called once the reply is written, before q is released.
func (q *request) mirror() {
	r := q.r
	q.mirr.want = false
	req := shadow.Request{UIN: q.uin, Method: r.Method, Cmd: q.cmd, Oneway: q.oneway}
	if r.Private != nil {
		req.Body, req.Ext = q.fwd.Body, q.fwd.Ext
	} else { // the frame's extensions went out as metadata: take them back
		req.Body, q.mirr.body = q.mirr.body, nil
		var f codec.Frame
		if mapping.RequestFrame(q.md.MD, &f) == nil {
			req.Ext = f.Ext
		}
	}
	for i := range req.Ext {
		if req.Ext[i].Key == codec.ExtCaller {
			req.Caller = string(req.Ext[i].Value)
		}
	}
	var primary shadow.Outcome
	if !q.oneway {
		primary = shadow.FromFrame(&q.out)
	}
	r.mig.mirror.Submit(&req, &primary)
}
