// Package migrate ties migration control together for the runtime and the
// admin API: it owns the process-lifetime state (operator overrides,
// the in-process window over each backend's request metrics, shadow counters
// and mismatch logs) that outlives config generations, hands route tables
// what they resolve once per route (a split Rule with its override Pin, a
// shadow Mirror), and answers /migrate/status,
// /migrate/diffs and /migrate/override from the routes of the generation in
// service (Publish).
package migrate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/override"
	"github.com/meshgate/meshgate/meshgate/shadow"
	"github.com/meshgate/meshgate/meshgate/split"
)

// Errors of the override API.
var (
	// ErrNotFound: no such route in service, or no such backend on it.
	ErrNotFound = errors.New("migrate: not found")
	// ErrNoSplit: the route has a single backend; there is nothing to
	// override.
	ErrNoSplit = errors.New("migrate: route has no split")
)

// Controller is the process-lifetime migration state.
type Controller struct {
	Overrides *override.Store
	Backends  *split.Metrics
	Shadows   *shadow.Metrics
	tracker   *split.Tracker
	log       *slog.Logger

	routes  atomic.Pointer[[]Route]
	window  atomic.Int64
	token   atomic.Pointer[string]
	staging atomic.Pointer[Generation]
	mu      sync.Mutex       // serialises Configure; guards mirrors
	mirrors []*shadow.Mirror // of the generation in service
}

// Option configures a Controller.
type Option func(*Controller)

// Request metric families the controller reads each route's backends from
// by default (labels listener, route, upstream, and code for requests).
const (
	RequestsFamily = "meshgate_requests_total"
	LatencyFamily  = "meshgate_request_duration_seconds"
)

// WithUnifiedMetrics reads each route's backends from the request metric
// families requests (a counter labelled listener, route, upstream, code)
// and latency (a histogram labelled listener, route, upstream) in g, where
// the data path records every request once (Route.Label names the route
// there). Without it they are read from RequestsFamily and LatencyFamily
// in New's registerer when that is also a Gatherer.
func WithUnifiedMetrics(g prometheus.Gatherer, requests, latency string) Option {
	return func(c *Controller) {
		c.tracker = split.NewTracker(split.GatherSource{Gatherer: g, Requests: requests, Latency: latency}, config.DefaultMigrateWindow, nil)
	}
}

// New creates the controller, registering its collectors on reg.
func New(reg prometheus.Registerer, log *slog.Logger, opts ...Option) *Controller {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{
		Overrides: override.New(reg),
		Backends:  split.NewMetrics(reg),
		Shadows:   shadow.NewMetrics(reg),
		log:       log.With("component", "migrate"),
	}
	g, _ := reg.(prometheus.Gatherer)
	if g == nil {
		g = prometheus.NewRegistry() // nothing to read: every window is empty
	}
	WithUnifiedMetrics(g, RequestsFamily, LatencyFamily)(c)
	for _, o := range opts {
		o(c)
	}
	c.window.Store(int64(config.DefaultMigrateWindow))
	empty := ""
	c.token.Store(&empty)
	c.routes.Store(&[]Route{})
	return c
}

// Run samples the backend counters every second until ctx ends.
func (c *Controller) Run(ctx context.Context) { c.tracker.Run(ctx, time.Second) }

// Configure applies migrate.* of a config being committed: the window, the
// admin token and the state file (loaded when it exists: overrides in it
// replace those in memory; otherwise the memory is written to it).
func (c *Controller) Configure(m *config.Migrate) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := m.Window
	if w <= 0 {
		w = config.DefaultMigrateWindow
	}
	c.window.Store(int64(w))
	c.tracker.SetWindow(w)
	tok := m.ResolvedToken()
	c.token.Store(&tok)
	return c.Overrides.UseFile(m.StateFile)
}

// Token is the admin token for /migrate mutations from non-loopback peers
// ("" = loopback only).
func (c *Controller) Token() string { return *c.token.Load() }

// Rule compiles route's split with its override pin.
func (c *Controller) Rule(route string, s *config.Split) (*split.Rule, error) {
	return split.New(route, s, c.Overrides.Pin(route))
}

// Mirror starts route's shadow mirror.
func (c *Controller) Mirror(route string, s *config.Shadow, caller shadow.Caller) *shadow.Mirror {
	return shadow.New(route, s, caller, c.Shadows, c.log)
}

// Route describes one route in service.
type Route struct {
	ID       string
	Listener string
	// Rule is the route's split; nil for a single-backend route.
	Rule *split.Rule
	// Upstream is the single backend when Rule is nil.
	Upstream string
	// Shadow is the shadow upstream ("" = none).
	Shadow string
	// Label is the route's label in the request metrics (see
	// WithUnifiedMetrics).
	Label string
}

// key names route's backend in the request metrics.
func (c *Controller) key(r Route, backend string) split.Key {
	return split.Key{Listener: r.Listener, Route: r.Label, Upstream: backend}
}

// Publish makes routes the set the admin API answers for (call when a
// generation is committed) and updates the share gauges.
func (c *Controller) Publish(routes []Route) {
	rs := slices.Clone(routes)
	slices.SortFunc(rs, func(a, b Route) int { return cmp.Compare(a.ID, b.ID) })
	var rules []*split.Rule
	for _, r := range rs {
		if r.Rule != nil {
			rules = append(rules, r.Rule)
		}
	}
	c.Backends.SetShares(rules)
	c.routes.Store(&rs)
}

func (c *Controller) find(route string) (Route, bool) {
	for _, r := range *c.routes.Load() {
		if r.ID == route {
			return r, true
		}
	}
	return Route{}, false
}

// SetOverride sends every request of route to backend ("" = the base side,
// backends[0]) until cleared. It takes effect for the next request.
func (c *Controller) SetOverride(route, backend, reason string) (override.Entry, error) {
	r, ok := c.find(route)
	if !ok {
		return override.Entry{}, fmt.Errorf("%w: route %q", ErrNotFound, route)
	}
	if r.Rule == nil {
		return override.Entry{}, fmt.Errorf("%w: %q", ErrNoSplit, route)
	}
	if backend == "" {
		backend = r.Rule.Backends()[0].Upstream
	}
	if r.Rule.Index(backend) < 0 {
		return override.Entry{}, fmt.Errorf("%w: route %q has no backend %q", ErrNotFound, route, backend)
	}
	err := c.Overrides.Set(route, backend, reason)
	e, _ := c.Overrides.Get(route)
	if err != nil {
		c.log.Error("override set but not persisted", "route", route, "backend", backend, "err", err)
	} else {
		c.log.Info("override set", "route", route, "backend", backend, "reason", reason)
	}
	return e, err
}

// ClearOverride removes route's override (it need not be in service).
func (c *Controller) ClearOverride(route string) (bool, error) {
	ok, err := c.Overrides.Clear(route)
	if ok {
		c.log.Info("override cleared", "route", route)
	}
	return ok, err
}

// Status is the /migrate/status document.
type Status struct {
	WindowSeconds float64       `json:"window_seconds"`
	Routes        []RouteStatus `json:"routes"`
	// Overrides lists every override, including any for a route not in
	// service (kept until cleared).
	Overrides []override.Entry `json:"overrides"`
}

// RouteStatus is one route's split and the QoS of each side.
type RouteStatus struct {
	Route    string          `json:"route"`
	Listener string          `json:"listener"`
	By       string          `json:"by,omitempty"`
	Override *override.Entry `json:"override,omitempty"`
	Backends []BackendStatus `json:"backends"`
	Shadow   *ShadowStatus   `json:"shadow,omitempty"`
}

// BackendStatus is one side of a route.
type BackendStatus struct {
	Upstream string `json:"upstream"`
	// Percent is the configured share of users (by uin_bucket) or weight
	// (by weight), in percent; -1 when not a share (by uin_range).
	Percent float64 `json:"percent"`
	split.WindowStats
}

// ShadowStatus is a route's shadow totals.
type ShadowStatus struct {
	Upstream string `json:"upstream"`
	shadow.Counts
}

// Status computes the status of every route in service.
func (c *Controller) Status() Status {
	st := Status{WindowSeconds: time.Duration(c.window.Load()).Seconds(), Routes: []RouteStatus{}, Overrides: c.Overrides.List()}
	routes := *c.routes.Load()
	var keys []split.Key
	for _, r := range routes {
		if r.Rule == nil {
			keys = append(keys, c.key(r, r.Upstream))
			continue
		}
		for _, b := range r.Rule.Backends() {
			keys = append(keys, c.key(r, b.Upstream))
		}
	}
	ws := c.tracker.Windows(keys)
	for _, r := range routes {
		rs := RouteStatus{Route: r.ID, Listener: r.Listener}
		if r.Rule == nil {
			rs.Backends = []BackendStatus{{Upstream: r.Upstream, Percent: 100, WindowStats: ws[c.key(r, r.Upstream)]}}
		} else {
			rs.By = r.Rule.By()
			if e, ok := c.Overrides.Get(r.ID); ok {
				rs.Override = &e
			}
			share := r.Rule.Share()
			for k, b := range r.Rule.Backends() {
				p := share[k]
				if p >= 0 {
					p *= 100
				}
				rs.Backends = append(rs.Backends, BackendStatus{Upstream: b.Upstream, Percent: p, WindowStats: ws[c.key(r, b.Upstream)]})
			}
		}
		if r.Shadow != "" {
			cnt, _ := c.Shadows.Counts(r.ID)
			rs.Shadow = &ShadowStatus{Upstream: r.Shadow, Counts: cnt}
		}
		st.Routes = append(st.Routes, rs)
	}
	return st
}

// Diffs returns the kept shadow mismatches, newest first.
func (c *Controller) Diffs(route string, limit int) []shadow.Diff {
	return c.Shadows.Diffs(route, limit)
}
