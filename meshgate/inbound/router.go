package inbound

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
)

// Upstream is where a route's calls go: a grpcpool.Pool in production.
// Acquire/Release bracket each call so a retired upstream closes only after
// its last call (Acquire returns false once retired).
type Upstream interface {
	Acquire() bool
	Release()
	Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error
}

// Route is one resolved private route: cmd (and optional uin range) →
// gRPC method on an upstream.
type Route struct {
	Cmd            uint32
	UINMin, UINMax uint64 // UINMax > 0 restricts the route to [UINMin, UINMax]
	Method         string
	Upstream       Upstream
	UpstreamName   string
	Timeout        time.Duration
	Stream         string // "" (unary), "server", "client" or "bidi" (stream.go)

	cmdLabel string
	latency  prometheus.Observer
	okCount  prometheus.Counter
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
// in slice order). m may be nil.
func NewTable(listener string, routes []Route, lim Limits, auth *AuthPolicy, m *admin.Metrics) *Table {
	t := &Table{byCmd: map[uint32][]*Route{}, MaxInFlight: lim.MaxInFlight, IdleTimeout: lim.IdleTimeout, ReadTimeout: lim.ReadTimeout, Auth: auth}
	if t.MaxInFlight <= 0 {
		t.MaxInFlight = config.DefaultMaxInFlight
	}
	if t.IdleTimeout <= 0 {
		t.IdleTimeout = config.DefaultIdleTimeout
	}
	if t.ReadTimeout <= 0 {
		t.ReadTimeout = config.DefaultReadTimeout
	}
	for i := range routes {
		r := routes[i]
		if r.Timeout <= 0 {
			r.Timeout = config.DefaultTimeout
		}
		r.cmdLabel = strconv.FormatUint(uint64(r.Cmd), 10)
		if m != nil {
			r.latency = m.Latency.WithLabelValues(listener, r.cmdLabel, r.Method)
			r.okCount = m.Requests.WithLabelValues(listener, r.cmdLabel, r.Method, "0")
		}
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
// a route's upstream name (nil result = error naming the field).
func TableFromConfig(l *config.Listener, d config.Defaults, upstream func(name string) Upstream, m *admin.Metrics) (*Table, error) {
	routes := make([]Route, 0, len(l.Routes))
	for i, rc := range l.Routes {
		u := upstream(rc.Upstream)
		if u == nil {
			return nil, fmt.Errorf("%w: listener %s: routes[%d].upstream: no grpc upstream %q", config.ErrInvalid, l.Name, i, rc.Upstream)
		}
		timeout := rc.Timeout
		if timeout == 0 {
			timeout = d.Timeout
		}
		routes = append(routes, Route{Cmd: rc.Cmd, UINMin: rc.UINMin, UINMax: rc.UINMax, Method: rc.Method,
			Upstream: u, UpstreamName: rc.Upstream, Timeout: timeout, Stream: streamKind(rc.Stream)})
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
		if auth.MaxSkew <= 0 {
			auth.MaxSkew = config.DefaultMaxSkew
		}
	}
	mif := l.MaxInFlight
	if mif == 0 {
		mif = d.MaxInFlight
	}
	t := NewTable(l.Name, routes, Limits{MaxInFlight: mif, IdleTimeout: d.IdleTimeout, ReadTimeout: d.ReadTimeout}, auth, m)
	t.Authz = authz.New(l.Authz)
	return t, nil
}
