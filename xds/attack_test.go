package xds

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/meshgate/config"
)

// Hostile xDS clients against the real control plane, with go-control-
// plane's discovery stubs over real TCP (and real mutual TLS).

// TestAttackStreamsPerIdentity: one client certificate opening streams
// over several connections gets MaxStreamsPerIdentity of them; the next
// is refused ResourceExhausted (counted too_many_streams), another
// identity is still served, and a closed stream frees its slot.
func TestAttackStreamsPerIdentity(t *testing.T) {
	_, reg, dial, pki := secureServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var conns []discovery.AggregatedDiscoveryServiceClient
	for range (MaxStreamsPerIdentity + MaxStreamsPerConn) / MaxStreamsPerConn {
		conns = append(conns, dial(pki.Creds(t, "idc")))
	}
	open := func(i int) (context.CancelFunc, error) {
		sctx, scancel := context.WithCancel(ctx)
		st, err := conns[i/MaxStreamsPerConn].StreamAggregatedResources(sctx)
		if err == nil {
			err = st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "idc"}, TypeUrl: resource.SecretType})
		}
		if err == nil {
			_, err = st.Recv()
		}
		return scancel, err
	}
	cancels := make([]context.CancelFunc, 0, MaxStreamsPerIdentity)
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range MaxStreamsPerIdentity {
		c, err := open(i)
		cancels = append(cancels, c)
		if err != nil {
			t.Fatalf("stream %d of idc: %v", i, err)
		}
	}
	c, err := open(MaxStreamsPerIdentity)
	c()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream %d of idc: %v, want ResourceExhausted", MaxStreamsPerIdentity, err)
	}
	if n := refusedCount(reg, RefusedTooManyStreams); n < 1 {
		t.Fatalf("refused{too_many_streams} = %v", n)
	}
	// Another certificate is served meanwhile.
	if _, err := xdstest.FirstSecrets(ctx, dial(pki.Creds(t, "cloud")), "cloud"); err != nil {
		t.Fatalf("cloud while idc is at its cap: %v", err)
	}
	// Closing one of idc's streams frees a slot (the server sees the
	// close a little later: poll).
	cancels[0]()
	testkit.Succeeds(t, testkit.Context(t, 10*time.Second), 50*time.Millisecond, func() error {
		c, err := open(MaxStreamsPerIdentity)
		cancels = append(cancels, c)
		return err
	}, "no slot after a stream closed")
}

// TestAttackHugeDiscoveryRequest: a DiscoveryRequest over MaxRecvMsgSize
// (a 5 MiB resource_names list) ends its stream with ResourceExhausted;
// the connection and the server keep serving.
func TestAttackHugeDiscoveryRequest(t *testing.T) {
	s, addr := serveForTest(t, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"), nil)
	_ = s
	c := adsClient(t, addr, insecure.NewCredentials())
	ctx := testkit.Context(t, 20*time.Second)
	names := make([]string, 0, 5<<20/64)
	for i := range cap(names) {
		names = append(names, fmt.Sprintf("%063d", i))
	}
	st, err := c.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "client-1"}, TypeUrl: resource.ClusterType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MiB request: %v, want ResourceExhausted", err)
	}
	st, err = c.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "client-1"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || len(r.GetResources()) == 0 {
		t.Fatalf("a normal request after it: %v %v", r, err)
	}
}

// logCount counts records at Warn and above.
type logCount struct{ n *atomic.Int64 }

func (h logCount) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h logCount) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h logCount) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logCount) WithGroup(string) slog.Handler      { return h }

func metricLabels(reg *prometheus.Registry, name string) []string {
	mfs, _ := reg.Gather()
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

// TestAttackNackStorm: a declared client sends NACKs and ACKs with type
// URLs of its choosing, huge error details, and requests for names that
// do not exist. Only the five served types are recorded (the nacks_total
// label set, Nacks, the ACK table stay bounded), the detail kept and shown
// by readiness is clipped, and the log gets one line for the one real
// rejection, not one per request.
func TestAttackNackStorm(t *testing.T) {
	var warns atomic.Int64
	reg := prometheus.NewRegistry()
	s, addr := listening(t, Options{Registerer: reg, Logger: slog.New(logCount{&warns})}, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"))
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	ctx := testkit.Context(t, 20*time.Second)
	st, err := adsClient(t, addr, insecure.NewCredentials()).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "client-1"}
	huge := strings.Repeat("é", 64<<10)
	const n = 300
	for i := range n {
		typ := fmt.Sprintf("type.googleapis.com/bogus.T%d", i)
		reqs := []*discovery.DiscoveryRequest{
			{Node: node, TypeUrl: typ, ResponseNonce: "x", ErrorDetail: &rpcstatus.Status{Message: huge}},
			{Node: node, TypeUrl: typ + "ack", VersionInfo: "v", ResponseNonce: "y"},
			{Node: node, TypeUrl: resource.ClusterType, ResourceNames: []string{fmt.Sprintf("nope-%d", i)}},
		}
		for _, r := range reqs {
			if err := st.Send(r); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
	}
	// The last request, a NACK of a served type, is recorded once all the
	// others were handled (one stream is handled in order).
	if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType, ResponseNonce: "z",
		ErrorDetail: &rpcstatus.Status{Message: huge}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool { return len(s.Nacks()) > 0 && s.NackRequests() > 0 }, "the real NACK not recorded")
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool {
		for _, nk := range s.Nacks() {
			if nk.TypeURL == resource.ListenerType {
				return true
			}
		}
		return false
	}, "the listener NACK not recorded")
	if ns := s.Nacks(); len(ns) != 1 || len(ns[0].Detail) > maxNackDetail+16 {
		t.Fatalf("%d outstanding NACKs (want 1, the served type), first detail %d bytes", len(ns), len(ns[0].Detail))
	}
	if err := s.NackCheck(); err == nil || len(err.Error()) > 2*maxNackDetail {
		t.Fatalf("readiness report of %d bytes", len(fmt.Sprint(err)))
	}
	if got := metricLabels(reg, "meshgate_xds_nacks_total"); len(got) != 1 || got[0] != resource.ListenerType {
		t.Fatalf("nacks_total type_url labels %d: %.200v", len(got), got)
	}
	s.nackMu.Lock()
	acks := len(s.acks)
	s.nackMu.Unlock()
	if acks != 0 {
		t.Fatalf("%d ACK entries for types never served", acks)
	}
	if w := warns.Load(); w > 1 {
		t.Fatalf("%d log lines at Warn or above for one real NACK", w)
	}
}

// TestAttackOtherNodesSecretNames: a client authorized as idc that
// subscribes (delta) to the names of cloud's secrets as well as its own
// gets its own only; cloud's private key never reaches it.
func TestAttackOtherNodesSecretNames(t *testing.T) {
	s, _, dial, pki := secureServer(t)
	cloudSnap, err := s.Snapshot("cloud")
	if err != nil {
		t.Fatal(err)
	}
	var cloudNames []string
	for name := range cloudSnap.GetResources(resource.SecretType) {
		cloudNames = append(cloudNames, name)
	}
	if len(cloudNames) == 0 {
		t.Fatal("cloud has no secrets")
	}
	ctx := testkit.Context(t, 10*time.Second)
	st, err := dial(pki.Creds(t, "idc")).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "idc"}, TypeUrl: resource.SecretType,
		ResourceNamesSubscribe: append([]string{"cluster/up/cert"}, cloudNames...)}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(pki.Dir, "cloud-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cloudKey := string(keyPEM)
	for _, res := range r.GetResources() {
		if res.GetName() != "cluster/up/cert" {
			t.Errorf("idc got %q", res.GetName())
		}
		if strings.Contains(string(res.GetResource().GetValue()), cloudKey[40:80]) {
			t.Errorf("idc got cloud's private key in %q", res.GetName())
		}
	}
	if len(r.GetResources()) != 1 {
		t.Fatalf("idc got %d secrets, want its own cluster/up/cert", len(r.GetResources()))
	}
}

// envoyPairConfig: Envoy nodes a and b on plaintext loopback, each with a
// listener routed to cluster <cluster> of n endpoints.
func envoyPairConfig(t *testing.T, cluster string, n int) *config.Config {
	t.Helper()
	eps := make([]string, n)
	for i := range eps {
		eps[i] = fmt.Sprintf("%q", fmt.Sprintf("127.0.%d.%d:%d", i/250, i%250+1, 10000+i))
	}
	node := func(id string) string {
		return fmt.Sprintf(`  - node: %s
    listeners:
    - {name: in, address: 127.0.0.1:10000, protocol: private, route_to: {cluster: %s}}
    clusters:
    - {name: %s, protocol: private, endpoints: [%s]}
`, id, cluster, cluster, strings.Join(eps, ", "))
	}
	return xdsConfig(t, "", "  address: 127.0.0.1:0\n  insecure: true\n  envoy:\n"+node("a")+node("b"))
}

// TestAttackNeverReadingClientBoundsPush: node a opens an ADS stream,
// asks for everything and then neither reads nor ACKs; node b reads and
// ACKs. Updates that change the clusters (make-before-break, each phase
// waiting for ACKs) return within their bound although a's stream is
// stuck (its HTTP/2 window full): the first one waits one phase timeout
// for a, later ones do not wait for a again (before, each waited two
// phase timeouts); b gets and ACKs every last version.
func TestAttackNeverReadingClientBoundsPush(t *testing.T) {
	s, addr := listening(t, Options{}, envoyPairConfig(t, "up0", 2000))
	const phase = time.Second
	s.phaseTimeout, s.phaseSettle = phase, 10*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	defer func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	ctx := testkit.Context(t, 60*time.Second)
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}

	bad, err := adsClient(t, addr, insecure.NewCredentials()).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range types {
		if err := bad.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "a"}, TypeUrl: typ}); err != nil {
			t.Fatal(err)
		}
	}
	good, err := adsClient(t, addr, insecure.NewCredentials()).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range types {
		if err := good.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "b"}, TypeUrl: typ}); err != nil {
			t.Fatal(err)
		}
	}
	acker := make(chan error, 1)
	go func() {
		for {
			r, err := good.Recv()
			if err != nil {
				acker <- err
				return
			}
			if err := good.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "b"}, TypeUrl: r.GetTypeUrl(),
				VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
				acker <- err
				return
			}
		}
	}()
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool {
		return s.AckedVersion("b", resource.ClusterType) == s.Version()
	}, "b never ACKed the first version")

	for i := 1; i <= 6; i++ {
		// The first update waits one phase for a (which is then lagging),
		// later ones only for b.
		bound := phase * 9 / 10
		if i == 1 {
			bound = phase + phase/2
		}
		start := time.Now()
		if err := s.Update(xdstest.Model(t, envoyPairConfig(t, fmt.Sprintf("up%d", i), 2000))); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > bound {
			t.Fatalf("update %d took %v with a stuck client, bound %v", i, d, bound)
		}
	}
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool {
		for _, typ := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType} {
			if s.AckedVersion("b", typ) != s.Version() {
				return false
			}
		}
		return true
	}, "b did not ACK the last version %s", s.Version())
	if v := s.AckedVersion("a", resource.ClusterType); v != "" {
		t.Fatalf("a ACKed %q", v)
	}
	select {
	case err := <-acker:
		t.Fatalf("good client's stream: %v", err)
	default:
	}
}
