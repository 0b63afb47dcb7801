package config

import (
	"strings"
	"testing"
)

// TestXDSUpstreamEndpoint: a grpc upstream may name one xds:/// target (resolved by an xDS
// control plane such as istiod); its misuse is in TestErrorsNameTheField.
func TestXDSUpstreamEndpoint(t *testing.T) {
	ok := strings.Replace(good, "endpoints: [127.0.0.1:9000]", `endpoints: ["xds:///user-svc.game.svc.cluster.local:9000"]`, 1)
	cfg, err := Parse([]byte(ok), "")
	if err != nil {
		t.Fatalf("xds:/// endpoint rejected: %v", err)
	}
	if got := cfg.Upstreams[0].Endpoints[0]; !IsXDSTarget(got) {
		t.Fatalf("endpoint %q", got)
	}
}
