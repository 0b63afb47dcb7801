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

// routeMig is a route's migration control: on a split route, Rule picks
// one of Sides (full routes to each backend); every side (or the route
// itself, unsplit) may mirror.
type routeMig = migrate.Wiring[Route]

// pick returns the route that serves request f: the split's chosen side,
// or r itself. Allocation-free.
func (r *Route) pick(f *codec.Frame) *Route {
	if r.mig == nil || r.mig.Rule == nil {
		return r
	}
	caller, _ := f.ExtValue(codec.ExtCaller)
	k, _ := r.mig.Rule.PickBytes(f.UIN, caller)
	return r.mig.Sides[k]
}

func applyTableOptions(t *Table, l *config.Listener, upstream func(string) Target, metrics *admin.Metrics, opts []TableOption) error {
	var o tableOptions
	for _, fn := range opts {
		fn(&o)
	}
	if o.mig == nil {
		return nil
	}
	ids := config.RouteIDs(l)
	seen := map[uint32]int{}
	for j := range l.Routes {
		rc := &l.Routes[j]
		r := t.byCmd[rc.Cmd][seen[rc.Cmd]]
		seen[rc.Cmd]++
		f := fmt.Sprintf("listener %s: routes[%d]", l.Name, j)
		label := routeLabel(r)
		mig, err := migrate.WireRoute(o.mig, migrate.RouteSpec[Route]{
			Info:   migrate.Route{ID: ids[j], Listener: l.Name, Upstream: r.UpstreamName, Label: label},
			Config: rc, Field: f, Err: config.ErrInvalid,
			ShadowCaller: func(sh *config.Shadow) shadow.Caller {
				switch u := upstream(sh.Upstream); {
				case u.GRPC != nil:
					m := sh.Method
					if m == "" {
						m = rc.Method
					}
					return migrate.GRPCShadow(u.GRPC, m)
				case u.Private != nil:
					return migrate.PrivateShadow(u.Private, sh.Cmd)
				}
				return nil
			},
			Side: func(k int, b config.SplitBackend, mirror *routeMig) (*Route, error) {
				u := upstream(b.Upstream)
				side := *r
				side.Upstream, side.Private, side.UpstreamName, side.Guard = u.GRPC, u.Private, b.Upstream, u.Guard
				switch {
				case u.GRPC != nil:
					if b.Method != "" {
						side.Method = b.Method
					}
					if side.Method == "" {
						return nil, fmt.Errorf("%w: %s.split.backends[%d].method: required for grpc upstream %q", config.ErrInvalid, f, k, b.Upstream)
					}
				case u.Private != nil:
					side.SendCmd = r.Cmd
					if b.Cmd != 0 {
						side.SendCmd = b.Cmd
					} else if k == 0 && rc.RewriteCmd != 0 {
						side.SendCmd = rc.RewriteCmd
					}
				default:
					return nil, nil // WireRoute reports the missing upstream
				}
				side.m = metrics.Route(l.Name, label, b.Upstream)
				side.mig = mirror
				side.asyncRoute()
				side.asyncGRPCRoute()
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

// mirrorState is a request's shadow decision, made before the call (a gRPC
// call takes the request buffer).
type mirrorState struct {
	want bool
	body []byte
}

func (q *request) mirrorBefore() {
	q.mirr = mirrorState{want: q.r.mig.Mirror != nil && q.r.mig.Mirror.Want(q.oneway)}
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
	r.mig.Mirror.Submit(&req, &primary)
}
