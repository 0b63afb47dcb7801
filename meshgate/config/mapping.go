package config

import (
	"github.com/meshgate/meshgate/codec"
	_ "github.com/meshgate/meshgate/codec/mgp" // the built-in codec is always known
)

// registeredCodecs is the set of codec names a listener or upstream may
// name before the config's own declarative codecs are added: every codec
// registered with codec.Register (the built-in "mgp" and any a program
// linking MeshGate registers from Go).
func registeredCodecs() map[string]bool {
	known := map[string]bool{}
	for _, n := range codec.Names() {
		known[n] = true
	}
	return known
}

// checkRouteMapping validates a route's frame ⇄ gRPC mapping fields. rf is
// the route's YAML path.
func checkRouteMapping(e *errs, rf, kind string, r Route) {
	if r.Oneway && kind != KindGRPC {
		e.add(rf+".oneway", "only a %s listener's routes can be oneway (a private request is oneway by its ONEWAY flag)", KindGRPC)
	}
}
