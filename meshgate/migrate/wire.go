package migrate

import (
	"fmt"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/shadow"
	"github.com/meshgate/meshgate/meshgate/split"
)

// Wiring is one route's migration control as a listener's route table
// holds it (R is the table's route type). On a split route Rule picks one
// of Sides, each a full route to its backend (counted in the request
// metrics under its own upstream); every side, or the route itself when
// unsplit, may mirror to Mirror.
type Wiring[R any] struct {
	Rule   *split.Rule
	Sides  []*R
	Mirror *shadow.Mirror
}

// RouteSpec is what a listener tells WireRoute about one of its routes.
type RouteSpec[R any] struct {
	// Info is the route's entry for the admin API; WireRoute sets its
	// Shadow and Rule.
	Info Route
	// Config is the route's configuration (its shadow and split).
	Config *config.Route
	// Field names the route in errors ("listeners[x].routes[2]"); Err is
	// the error they wrap (the caller's invalid-config sentinel).
	Field string
	Err   error
	// ShadowCaller returns the caller of the shadow upstream, nil when
	// there is no such upstream.
	ShadowCaller func(*config.Shadow) shadow.Caller
	// Side builds the route serving split backend k, nil when there is no
	// such upstream. mirror is the Wiring the side carries (nil when the
	// route has no shadow).
	Side func(k int, b config.SplitBackend, mirror *Wiring[R]) (*R, error)
}

// WireRoute resolves the shadow and split of one route and records the
// route (and its mirror) in the staging generation. It returns nil when
// the route has neither.
func WireRoute[R any](c *Controller, s RouteSpec[R]) (*Wiring[R], error) {
	gen := c.Staging()
	rc, info := s.Config, s.Info
	var own *Wiring[R] // the mirror every side (or the unsplit route) carries
	if sh := rc.Shadow; sh != nil {
		caller := s.ShadowCaller(sh)
		if caller == nil {
			return nil, fmt.Errorf("%w: %s.shadow.upstream: no upstream %q", s.Err, s.Field, sh.Upstream)
		}
		m := c.Mirror(info.ID, sh, caller)
		gen.AddMirror(m)
		info.Shadow = sh.Upstream
		own = &Wiring[R]{Mirror: m}
	}
	if rc.Split == nil {
		gen.Add(info)
		return own, nil
	}
	rule, err := c.Rule(info.ID, rc.Split)
	if err != nil {
		return nil, fmt.Errorf("%w: %s.split: %w", s.Err, s.Field, err)
	}
	w := &Wiring[R]{Rule: rule}
	for k, b := range rc.Split.Backends {
		side, err := s.Side(k, b, own)
		if err != nil {
			return nil, err
		}
		if side == nil {
			return nil, fmt.Errorf("%w: %s.split.backends[%d].upstream: no upstream %q", s.Err, s.Field, k, b.Upstream)
		}
		w.Sides = append(w.Sides, side)
	}
	info.Rule = rule
	gen.Add(info)
	return w, nil
}
