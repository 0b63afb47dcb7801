package config

import (
	"errors"
	"strings"
	"testing"
)

// TestXDSUpstreamEndpoint: a grpc upstream may name one xds:/// target (resolved by an xDS
// control plane such as istiod); misuse is rejected naming the field.
func TestXDSUpstreamEndpoint(t *testing.T) {
	ok := strings.Replace(good, "endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///user-svc.game.svc.cluster.local:9000"]`, 1)
	cfg, err := Parse([]byte(ok), "")
	if err != nil {
		t.Fatalf("xds:/// endpoint rejected: %v", err)
	}
	if got := cfg.Upstreams[0].Endpoints[0]; !IsXDSTarget(got) {
		t.Fatalf("endpoint %q", got)
	}
	for name, c := range map[string]struct{ from, to, field string }{
		"two endpoints": {"endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///a", 127.0.0.1:9001]`, "upstreams[0].endpoints[0]: an xds:/// endpoint must be the upstream's only endpoint"},
		"private":       {"endpoints: [127.0.0.1:8000]", `endpoints: ["xds:///legacy"]`, "upstreams[1].endpoints[0]: xds:/// endpoints are for grpc upstreams only"},
		"no name":       {"endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///"]`, "upstreams[0].endpoints[0]: xds:/// needs a target name"},
	} {
		_, err := Parse([]byte(strings.Replace(good, c.from, c.to, 1)), "")
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v, want %q", name, err, c.field)
		}
	}
}
