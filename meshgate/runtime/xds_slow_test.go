package runtime

import (
	"context"
	"fmt"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestReadinessAnswersDuringSlowXDSPush: an Envoy node that takes a
// snapshot and never ACKs makes the next push wait (bounded) for its ACK;
// meanwhile /readyz and /config answer at once (the runtime holds no lock
// readiness needs across the wait).
func TestReadinessAnswersDuringSlowXDSPush(t *testing.T) {
	grpcEP := backend(t, "A")
	withXDS := func(cluster string) string {
		return yamlConfig(grpcEP, "") + fmt.Sprintf(`
xds:
  address: 127.0.0.1:0
  insecure: true
  envoy:
  - node: slow
    listeners:
    - {name: l, address: 127.0.0.1:7301, protocol: grpc, route_to: {cluster: %[1]s}}
    clusters:
    - {name: %[1]s, protocol: grpc, endpoints: [127.0.0.1:7001]}
`, cluster)
	}
	rt := start(t, mustParse(t, withXDS("c1")))
	cc, err := grpc.NewClient(rt.XDS().Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = grpcEP
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Subscribe to clusters, take the first response, never ACK.
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "slow", Cluster: "slow"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("first snapshot: %v", err)
	}
	go func() { // drain later pushes without ACKing them
		for {
			if _, err := st.Recv(); err != nil {
				return
			}
		}
	}()
	// A reload that replaces the node's cluster pushes make-before-break
	// phases, each waiting (up to 5s) for the node's ACK.
	reloaded := make(chan error, 1)
	next := mustParse(t, withXDS("c2"))
	go func() { reloaded <- rt.Reload(next) }()
	// While it waits, readiness and /config answer promptly.
	begin := time.Now()
	waitPushing := time.After(300 * time.Millisecond) // let the push reach its ACK wait
	select {
	case err := <-reloaded:
		t.Fatalf("reload returned before the ACK wait (%v): the node's subscription was not counted", err)
	case <-waitPushing:
	}
	ready := make(chan error, 1)
	go func() { ready <- rt.Admin().Ready() }()
	select {
	case <-ready:
	case <-time.After(time.Second):
		t.Fatal("/readyz blocked behind an xDS push waiting for ACKs")
	}
	if v := rt.configView(); v == nil {
		t.Fatal("/config view empty")
	}
	cancel() // the node goes away: the push stops waiting after this phase
	if err := <-reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
	t.Logf("push waited %v for the missing ACK", time.Since(begin).Round(time.Millisecond))
}
