package outbound

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/transcode"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// Route is one resolved routing entry: a gRPC method (or service wildcard)
// to a private command on a private pool (Pool), or to a gRPC upstream
// (GRPC: the call is proxied as raw bytes, its method rewritten to
// CallMethod when set).
type Route struct {
	Method     string // as configured: "/pkg.Svc/M" or "/pkg.Svc/*"
	Cmd        uint32
	Pool       *upstream.PrivatePool
	GRPC       *grpcpool.Pool
	CallMethod string // gRPC upstream: method called; "" = the called method
	Upstream   string
	Timeout    time.Duration // used when the call carries no deadline
	// Oneway sends the frame with ONEWAY set and answers the call (empty
	// message, OK) once the frame is written.
	Oneway bool
	// Stream is "" (unary), "server", "client" or "bidi" (stream.go).
	Stream string
	// Policy is the route's resilience policy (retries of idempotent
	// routes) for a private upstream's Guard.
	Policy     resilience.Policy
	switchName string // service switch (resilience.go)

	m   *admin.RouteMetrics
	mig *routeMig // migration control (migrate.go); nil = none

	md   *mapping.MDMap   // the listener's extension ⇄ metadata pairs
	body *transcode.Codec // body.format json: protobuf ⇄ JSON
}

// table is an immutable routing table; swapped atomically by Update.
type table struct {
	listener string
	exact    map[string]int // method -> index in routes
	service  map[string]int // "/pkg.Svc/" -> index of the first wildcard route
	routes   []*Route
	authz    *gate // nil: no authz section, every caller allowed
}

// buildTable resolves l's routes against pools. Errors name the field.
func buildTable(l config.Listener, set upstream.Set, mm *admin.Metrics) (*table, error) {
	t := &table{listener: l.Name, exact: map[string]int{}, service: map[string]int{}}
	var errs []error
	for i, r := range l.Routes {
		f := fmt.Sprintf("listeners[%s].routes[%d]", l.Name, i)
		if err := config.CheckMethod(r.Method, true); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s.method: %v", ErrConfig, f, err))
			continue
		}
		p, g := set.Private[r.Upstream], set.GRPC[r.Upstream]
		if p == nil && g == nil {
			errs = append(errs, fmt.Errorf("%w: %s.upstream: no upstream %q", ErrConfig, f, r.Upstream))
			continue
		}
		if g != nil && r.Oneway {
			errs = append(errs, fmt.Errorf("%w: %s.oneway: only for a private upstream", ErrConfig, f))
			continue
		}
		if r.Timeout <= 0 { // resolved by config.ApplyDefaults
			errs = append(errs, fmt.Errorf("%w: %s.timeout: must be positive (unresolved config?)", ErrConfig, f))
			continue
		}
		rt := &Route{Method: r.Method, Cmd: r.Cmd, Pool: p, GRPC: g, CallMethod: r.RewriteMethod, Upstream: r.Upstream, Policy: resilience.PolicyFor(r.RouteResilience), switchName: r.Switch,
			Timeout: r.Timeout, Oneway: r.Oneway, Stream: r.StreamMode(), m: mm.Route(l.Name, r.Method, r.Upstream)}
		idx := len(t.routes)
		t.routes = append(t.routes, rt)
		if svc, ok := strings.CutSuffix(r.Method, "*"); ok {
			if _, dup := t.service[svc]; !dup {
				t.service[svc] = idx
			}
		} else if _, dup := t.exact[r.Method]; !dup {
			t.exact[r.Method] = idx
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return t, nil
}

func (r *Route) acquire() bool {
	if r.GRPC != nil {
		return r.GRPC.Acquire()
	}
	return r.Pool.Acquire()
}

func (r *Route) release() {
	if r.GRPC != nil {
		r.GRPC.Release()
		return
	}
	r.Pool.Release()
}

// lookup returns the first route matching method (exact or service
// wildcard, first match in config order wins), or nil.
func (t *table) lookup(method string) *Route {
	ei, eok := t.exact[method]
	si, sok := -1, false
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		si, sok = t.service[method[:i+1]]
	}
	switch {
	case eok && sok:
		return t.routes[min(ei, si)]
	case eok:
		return t.routes[ei]
	case sok:
		return t.routes[si]
	}
	return nil
}

// checkMethod validates a called method name with config.CheckMethod's
// rules ("/pkg.Svc/Method", no empty, ".", ".." segment, no NUL or
// whitespace, no extra "/", no wildcard) without allocating.
func checkMethod(m string) bool {
	if len(m) < 4 || m[0] != '/' {
		return false
	}
	rest := m[1:]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return false
	}
	svc, name := rest[:i], rest[i+1:]
	if name == "" || name == "*" || strings.IndexByte(name, '/') >= 0 {
		return false
	}
	for _, p := range [2]string{svc, name} {
		if p == "." || p == ".." {
			return false
		}
		for j := 0; j < len(p); j++ {
			switch p[j] {
			case 0, ' ', '\t', '\r', '\n':
				return false
			}
		}
	}
	return true
}
