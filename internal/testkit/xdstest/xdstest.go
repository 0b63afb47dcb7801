// Package xdstest holds what the xds package's tests and the e2e tests
// share to drive the xDS control plane: a config's model, an ADS client,
// and the first secrets a node is sent (state of the world and delta). It
// is apart from testkit so that only the tests that speak xDS link
// go-control-plane's discovery API. Import it only from _test.go files.
package xdstest

import (
	"context"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds/model"
)

// Model is the control plane's model of cfg (cfg.XDSModel), as the
// runtime builds it; an error fails the test.
func Model(tb testing.TB, cfg *config.Config) *model.XDS {
	tb.Helper()
	m, err := cfg.XDSModel()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// ADS is an ADS client of the control plane at target (host:port, or
// unix://path) over creds, closed at cleanup.
func ADS(tb testing.TB, target string, creds credentials.TransportCredentials) discovery.AggregatedDiscoveryServiceClient {
	tb.Helper()
	return discovery.NewAggregatedDiscoveryServiceClient(testkit.Dial(tb, target, grpc.WithTransportCredentials(creds)))
}

// FirstSecrets opens a state-of-the-world stream, asks for every secret as
// node and returns the first response or the stream's error.
func FirstSecrets(ctx context.Context, c discovery.AggregatedDiscoveryServiceClient, node string) (*discovery.DiscoveryResponse, error) {
	st, err := c.StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: resource.SecretType}); err != nil {
		return nil, err
	}
	return st.Recv()
}

// FirstDeltaSecrets is FirstSecrets over an incremental (delta) stream
// subscribed to every secret.
func FirstDeltaSecrets(ctx context.Context, c discovery.AggregatedDiscoveryServiceClient, node string) (*discovery.DeltaDiscoveryResponse, error) {
	st, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: resource.SecretType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		return nil, err
	}
	return st.Recv()
}
