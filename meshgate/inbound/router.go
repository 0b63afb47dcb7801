package inbound

import (
	"fmt"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/transcode"
)

// Upstream is a gRPC route target: a grpcpool.Pool in production.
// Acquire/Release bracket each call so a retired upstream closes only after
// its last call (Acquire returns false once retired).
type Upstream = migrate.GRPCTarget

// FrameUpstream is a private route target: an upstream.PrivatePool in
// production (frame-aware proxy: the pool load-balances per request and
// assigns its own seq on its pooled connections).
type FrameUpstream = migrate.FrameTarget

// Target is a resolved route upstream: exactly one of GRPC and Private is
// set (nil both: unknown upstream).
type Target struct {
	GRPC    Upstream
	Private FrameUpstream
	// Guard, when set, is the upstream's resilience Guard: gRPC calls go
	// through it (endpoint choice, retries, breakers, deadline check).
	Guard *resilience.Guard
}

// Route is one resolved private route: cmd (and optional uin range) →
// a gRPC method on a gRPC upstream (Upstream), or a command on a private
// upstream (Private; the frame is proxied with cmd rewritten to SendCmd).
type Route struct {
	Cmd            uint32
	UINMin, UINMax uint64 // UINMax > 0 restricts the route to [UINMin, UINMax]
	Method         string
	Upstream       Upstream
	Private        FrameUpstream
	SendCmd        uint32 // cmd sent to a private upstream; 0 = Cmd
	UpstreamName   string
	Timeout        time.Duration
	Stream         string // "" (unary), "server", "client" or "bidi" (stream.go)
	// Body, when set, converts JSON request bodies to protobuf and replies
	// back (route body.format json).
	Body *transcode.Codec
	// Guard, Policy and Switch: the route's resilience (resilience.go).
	Guard      *resilience.Guard
	Policy     resilience.Policy
	Switch     *resilience.Switch
	switchName string

	m      *admin.RouteMetrics
	mig    *routeMig    // migration control (migrate.go); nil = none
	async  asyncStarter // requests completed on the I/O goroutines (async.go); nil = none
	gasync grpcStarter  // the same for a gRPC target (asyncgrpc.go); nil = none
}

func (r *Route) acquire() bool {
	if r.Private != nil {
		return r.Private.Acquire()
	}
	return r.Upstream.Acquire()
}

func (r *Route) release() {
	if r.Private != nil {
		r.Private.Release()
		return
	}
	r.Upstream.Release()
}

// matches reports whether the route takes a request for uin.
func (r *Route) matches(uin uint64) bool {
	return r.UINMax == 0 || (uin >= r.UINMin && uin <= r.UINMax)
}

// Table is an immutable routing table for one private listener, swapped
// atomically on reload. Requests keep the table they started with.
type Table struct {
	byCmd       map[uint32][]*Route
	MaxInFlight int
	IdleTimeout time.Duration
	ReadTimeout time.Duration
	Auth        *AuthPolicy
	Authz       *authz.Policy // nil: every authenticated caller may send every cmd
	// MD maps configured extensions to metadata keys (nil = none).
	MD *mapping.MDMap
	// Admission is the listener-wide overload cap (nil = none).
	Admission *resilience.Admission
}

// AttachSwitches resolves the routes' service switches (by name) in sw.
func (t *Table) AttachSwitches(sw *resilience.Switches) {
	for _, rs := range t.byCmd {
		for _, r := range rs {
			r.Switch = sw.Get(r.switchName)
		}
	}
}

// Lookup returns the first route matching cmd and uin, or nil.
func (t *Table) Lookup(cmd uint32, uin uint64) *Route {
	for _, r := range t.byCmd[cmd] {
		if r.matches(uin) {
			return r
		}
	}
	return nil
}

// Routes returns every route in config order per cmd (for tests and
// introspection).
func (t *Table) Routes() []*Route {
	var out []*Route
	for _, rs := range t.byCmd {
		out = append(out, rs...)
	}
	return out
}

// NewTable builds a table from resolved routes (first match wins per cmd,
// in slice order) and limits: every value is taken as given (the config
// was defaulted once, by config.ApplyDefaults). m may be nil.
func NewTable(listener string, routes []Route, lim Limits, auth *AuthPolicy, m *admin.Metrics) *Table {
	t := &Table{byCmd: map[uint32][]*Route{}, MaxInFlight: lim.MaxInFlight, IdleTimeout: lim.IdleTimeout, ReadTimeout: lim.ReadTimeout, Auth: auth}
	for i := range routes {
		r := routes[i]
		if r.SendCmd == 0 {
			r.SendCmd = r.Cmd
		}
		r.m = m.Route(listener, routeLabel(&r), r.UpstreamName)
		r.asyncRoute()
		r.asyncGRPCRoute()
		t.byCmd[r.Cmd] = append(t.byCmd[r.Cmd], &r)
	}
	return t
}

// Limits are the per-connection limits a table carries.
type Limits struct {
	MaxInFlight int
	IdleTimeout time.Duration
	ReadTimeout time.Duration
}

// TableFromConfig builds the table of private listener l. upstream resolves
// a route's upstream name to a target of either protocol (neither set =
// error naming the field).
func TableFromConfig(l *config.Listener, d config.Defaults, upstream func(name string) Target, m *admin.Metrics, opts ...TableOption) (*Table, error) {
	routes := make([]Route, 0, len(l.Routes))
	for i, rc := range l.Routes {
		u := upstream(rc.Upstream)
		if u.GRPC == nil && u.Private == nil {
			return nil, fmt.Errorf("%w: listener %s: routes[%d].upstream: no upstream %q", config.ErrInvalid, l.Name, i, rc.Upstream)
		}
		if u.GRPC != nil && rc.Method == "" {
			return nil, fmt.Errorf("%w: listener %s: routes[%d].method: required for grpc upstream %q", config.ErrInvalid, l.Name, i, rc.Upstream)
		}
		pol := resilience.PolicyFor(rc.RouteResilience)
		if u.GRPC != nil {
			pol.HedgeDelay = 0 // a bridged call has one reply buffer: retries yes, concurrent hedges not (yet)
		}
		routes = append(routes, Route{Cmd: rc.Cmd, UINMin: rc.UINMin, UINMax: rc.UINMax, Method: rc.Method,
			Upstream: u.GRPC, Private: u.Private, SendCmd: rc.RewriteCmd, UpstreamName: rc.Upstream, Timeout: rc.Timeout, Stream: rc.StreamMode(),
			Guard: u.Guard, Policy: pol, switchName: rc.Switch})
	}
	var auth *AuthPolicy
	if l.Auth != nil {
		if l.Codec != "" && l.Codec != "mgp" {
			return nil, fmt.Errorf("%w: listener %s: auth: HMAC auth needs codec mgp, not %q", config.ErrInvalid, l.Name, l.Codec)
		}
		auth = &AuthPolicy{Keys: map[uint32][]byte{}, MaxSkew: l.Auth.MaxSkew, MaxNonces: l.Auth.MaxNonces, MaxNoncesPerKey: l.Auth.MaxNoncesPerKey}
		for id, k := range l.Auth.Keys {
			auth.Keys[id] = []byte(k)
		}
	}
	t := NewTable(l.Name, routes, Limits{MaxInFlight: l.MaxInFlight, IdleTimeout: d.IdleTimeout, ReadTimeout: d.ReadTimeout}, auth, m)
	t.Authz = authz.New(l.Authz)
	t.MD = mapping.NewMDMap(l.Metadata)
	t.Admission = resilience.NewAdmission(l.Overload)
	if err := applyTableOptions(t, l, upstream, m, opts); err != nil {
		return nil, err
	}
	return t, nil
}

// routeLabel names a private route in metrics: its cmd, with its uin range
// when it has one ("7" or "7[100-199]").
func routeLabel(r *Route) string {
	l := strconv.FormatUint(uint64(r.Cmd), 10)
	if r.UINMax > 0 {
		l += "[" + strconv.FormatUint(r.UINMin, 10) + "-" + strconv.FormatUint(r.UINMax, 10) + "]"
	}
	return l
}
