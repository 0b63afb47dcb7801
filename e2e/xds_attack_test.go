package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
)

const (
	attackHMACSecret   = "e2e-hmac-secret-7f3a0b"
	attackMigrateToken = "e2e-migrate-token-9c1d2e"
)

// xdsAttackConfig: a private listener with an HMAC key, a migrate token,
// and a plaintext loopback control plane with Envoy nodes a and b, each
// routed to cluster <cluster>.
func xdsAttackConfig(cluster string) string {
	node := func(id string) string {
		return fmt.Sprintf(`  - node: %s
    listeners:
    - {name: in, address: 127.0.0.1:10000, protocol: private, route_to: {cluster: %s}}
    clusters:
    - {name: %s, protocol: private, endpoints: ["127.0.0.1:7100"]}
`, id, cluster, cluster)
	}
	return fmt.Sprintf(`readiness: none
listeners:
- name: p_in
  kind: private
  address: 127.0.0.1:0
  auth: {keys: {7: %q}}
  routes: [{cmd: 1, upstream: legacy}]
upstreams:
- {name: legacy, protocol: private, endpoints: [%q]}
migrate: {token: %q}
switches: [{name: feature}]
xds:
  address: 127.0.0.1:0
  insecure: true
  envoy:
%s%s`, attackHMACSecret, harness.RefusedAddr, attackMigrateToken, node("a"), node("b"))
}

// adminGet GETs path with a 1 s client timeout and returns the status and
// how long the answer took.
func adminGet(url, host string) (int, string, time.Duration, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", 0, err
	}
	if host != "" {
		req.Host = host
	}
	c := &http.Client{Timeout: time.Second}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", time.Since(start), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start), err
}

// TestAttackXDSReloadStuckClient: the real binary serves Envoy nodes a
// and b. Node a opens an ADS stream, asks for everything and then neither
// reads nor ACKs; node b reads and ACKs. A SIGHUP with a config that
// replaces the clusters (make-before-break: two phases, each waiting up
// to 5 s for ACKs) completes after one phase timeout (a is then lagging
// and not waited for again; before, two), a second one at once; /readyz
// answers 200 within a second all along, and b receives each new cluster.
// The admin endpoint
// of the same process shows no secret in /config, refuses POST /config
// and a rebound Host name.
func TestAttackXDSReloadStuckClient(t *testing.T) {
	m := harness.StartMeshgate(t, xdsAttackConfig("up1"), harness.WaitReady(20*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Admin: no secret in /config; GET only; literal Host only.
	code, body, _, err := adminGet(m.AdminURL("/config"), "")
	if err != nil || code != 200 || !strings.Contains(body, `"p_in"`) {
		t.Fatalf("/config: %d %v %.200s", code, err, body)
	}
	for _, secret := range []string{attackHMACSecret, attackMigrateToken} {
		if strings.Contains(body, secret) {
			t.Errorf("/config shows the secret %q", secret)
		}
	}
	if c, _ := testkit.HTTP(t, "POST", m.AdminURL("/config"), "application/json", "{}"); c != http.StatusMethodNotAllowed {
		t.Errorf("POST /config: %d, want 405", c)
	}
	if c, _, _, err := adminGet(m.AdminURL("/config"), "rebound.example"); err != nil || c != http.StatusMisdirectedRequest {
		t.Errorf("GET /config with Host rebound.example: %d %v, want 421", c, err)
	}

	dial := func() discovery.AggregatedDiscoveryServiceClient {
		cc, err := grpc.NewClient(m.XDS(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return discovery.NewAggregatedDiscoveryServiceClient(cc)
	}
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}
	subscribe := func(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, node string) {
		for _, typ := range types {
			if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: typ}); err != nil {
				t.Fatal(err)
			}
		}
	}
	stuck, err := dial().StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subscribe(stuck, "a") // and never Recv

	good, err := dial().StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subscribe(good, "b")
	var clusters atomic.Value // string: the names in b's last CDS response
	clusters.Store("")
	go func() {
		for {
			r, err := good.Recv()
			if err != nil {
				return
			}
			if r.GetTypeUrl() == resource.ClusterType {
				var names []string
				for _, res := range r.GetResources() {
					names = append(names, string(res.GetValue()))
				}
				clusters.Store(strings.Join(names, ","))
			}
			if good.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "b"}, TypeUrl: r.GetTypeUrl(),
				VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}) != nil {
				return
			}
		}
	}()
	hasCluster := func(name string) func() error {
		return func() error {
			if c := clusters.Load().(string); !strings.Contains(c, name) {
				return fmt.Errorf("b's clusters: %q", c)
			}
			return nil
		}
	}
	harness.Eventually(t, 10*time.Second, "b gets cluster up1", hasCluster("up1"))

	// /readyz all along the reload.
	var (
		mu      sync.Mutex
		worst   time.Duration
		bad     []string
		samples int
	)
	stop := make(chan struct{})
	polled := make(chan struct{})
	readyz := m.AdminURL("/readyz") // read here: Reload re-reads the addresses
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			c, _, d, err := adminGet(readyz, "")
			mu.Lock()
			samples++
			worst = max(worst, d)
			if err != nil || c != 200 {
				bad = append(bad, fmt.Sprintf("%d %v after %v", c, err, d))
			}
			mu.Unlock()
		}
	}()

	start := time.Now()
	m.Reload(xdsAttackConfig("up2")) // returns once the reload, xDS push included, completed
	took := time.Since(start)
	harness.Eventually(t, 5*time.Second, "b gets cluster up2", hasCluster("up2"))
	start = time.Now()
	m.Reload(xdsAttackConfig("up3"))
	took2 := time.Since(start)
	harness.Eventually(t, 5*time.Second, "b gets cluster up3", hasCluster("up3"))
	close(stop)
	<-polled

	// The first phase waits at most 5 s for a's ACKs; then a is lagging.
	if took > 8*time.Second {
		t.Errorf("reload with a stuck xDS client took %v, bound 8s", took)
	}
	if took2 > 3*time.Second {
		t.Errorf("second reload with the same stuck client took %v, bound 3s", took2)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("reloads took %v, then %v; /readyz: %d samples, slowest %v", took, took2, samples, worst)
	if len(bad) > 0 || samples == 0 {
		t.Errorf("/readyz during the reload: %d bad of %d: %v", len(bad), samples, bad)
	}
	if worst > time.Second {
		t.Errorf("/readyz took %v during the reload", worst)
	}
}
