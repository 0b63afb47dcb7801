package outbound_test

import (
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcserve"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// TestDirectHandlerFast: on the direct server transport the methods of
// unary routes (exact and service wildcard) and the listener's own fast
// methods take the fast path; stream routes, the listener's other own
// methods and unknown methods are delegated (grpcserve.FastPath false).
// A reload that turns a route into a stream route moves it at once.
func TestDirectHandlerFast(t *testing.T) {
	e := newEnv(t, legacy.ServerOptions{}, 1, 1)
	set := upstream.Set{Private: map[string]*upstream.PrivatePool{"legacy": e.pool}}
	routes := append(append([]config.Route(nil), defaultRoutes...),
		config.Route{Method: "/test.Stream/Server", Cmd: legacy.CmdEcho, Upstream: "legacy", Stream: config.StreamServer},
		config.Route{Method: "/test.Unary/M", Cmd: legacy.CmdEcho, Upstream: "legacy", Stream: "unary"})
	if err := e.out.Update(listener(routes...), set); err != nil {
		t.Fatal(err)
	}
	own := func(m string) (fast, ok bool) {
		rest, ok := strings.CutPrefix(m, "/grpc.health.v1.Health/")
		return ok && rest == "Check", ok
	}
	fp, ok := e.out.DirectHandler(nil, own).(grpcserve.FastPath)
	if !ok {
		t.Fatal("the direct handler is not a grpcserve.FastPath")
	}
	for m, want := range map[string]bool{
		"/test.Echo/Echo":              true,
		"/test.Upper/Anything":         true, // service wildcard
		"/test.Stream/Server":          false,
		"/test.Unary/M":                true,  // stream: unary
		"/nope.Svc/M":                  false, // unknown: grpc-go answers UNIMPLEMENTED
		"/grpc.health.v1.Health/Check": true,
		"/grpc.health.v1.Health/Watch": false,
		"/grpc.reflection.v1.X/Y":      false,
		"/test.Echo/../x":              false,
	} {
		if got := fp.Fast(m); got != want {
			t.Errorf("Fast(%q) = %v, want %v", m, got, want)
		}
	}
	routes[0].Stream = config.StreamBidi
	if err := e.out.Update(listener(routes...), set); err != nil {
		t.Fatal(err)
	}
	if fp.Fast("/test.Echo/Echo") {
		t.Error("a route turned into a stream route by a reload stays on the fast path")
	}
}
