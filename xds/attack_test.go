package xds

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	s, reg, dial, pki := secureServer(t)
	const MaxStreamsPerIdentity = 40 // lowered for the test (the product's is 1024)
	s.nackMu.Lock()
	s.maxPerIdentity = MaxStreamsPerIdentity
	s.nackMu.Unlock()
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
// (a 2 MiB resource_names list) ends its stream with ResourceExhausted;
// the connection and the server keep serving.
func TestAttackHugeDiscoveryRequest(t *testing.T) {
	s, addr := serveForTest(t, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"), nil)
	_ = s
	c := adsClient(t, addr, insecure.NewCredentials())
	ctx := testkit.Context(t, 20*time.Second)
	names := make([]string, 0, 2*MaxRecvMsgSize/64)
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
		t.Fatalf("2 MiB request: %v, want ResourceExhausted", err)
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

// TestAttackNackStorm: a declared client NACKs with huge error details,
// over and over, and asks for names that do not exist; another asks for
// type URLs of its choosing (NACK, ACK, plain request, SotW and delta).
// A type not served closes its stream InvalidArgument (counted
// unknown_type) and records nothing: the nacks_total label set, Nacks and
// the ACK table stay bounded. The detail kept and shown by readiness is
// clipped, and the log gets one line for the one rejected version, not
// one per request.
func TestAttackNackStorm(t *testing.T) {
	var warns atomic.Int64
	reg := prometheus.NewRegistry()
	s, addr := listening(t, Options{Registerer: reg, Logger: slog.New(logCount{&warns})}, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"))
	serveUntilCleanup(t, s)
	ctx := testkit.Context(t, 20*time.Second)
	c := adsClient(t, addr, insecure.NewCredentials())
	node := &core.Node{Id: "client-1"}
	huge := strings.Repeat("é", 64<<10)

	for i, r := range []*discovery.DiscoveryRequest{
		{Node: node, TypeUrl: "type.googleapis.com/bogus.T1", ResponseNonce: "x", ErrorDetail: &rpcstatus.Status{Message: huge}},
		{Node: node, TypeUrl: "type.googleapis.com/bogus.T2", VersionInfo: "v", ResponseNonce: "y"},
		{Node: node, TypeUrl: "type.googleapis.com/bogus.T3", ResourceNames: []string{"a"}},
	} {
		st, err := c.StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bogus type %d: %v, want InvalidArgument", i, err)
		}
	}
	dst, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: "type.googleapis.com/bogus.D", ResourceNamesSubscribe: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bogus delta type: %v, want InvalidArgument", err)
	}
	if n := refusedCount(reg, RefusedUnknownType); n != 4 {
		t.Fatalf("refused{unknown_type} = %v, want 4", n)
	}

	st, err := c.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		for _, r := range []*discovery.DiscoveryRequest{
			{Node: node, TypeUrl: resource.ListenerType, ResponseNonce: "z", ErrorDetail: &rpcstatus.Status{Message: huge}},
			{Node: node, TypeUrl: resource.ClusterType, ResourceNames: []string{fmt.Sprintf("nope-%d", i)}},
		} {
			if err := st.Send(r); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
	}
	// One stream is handled in order: once the server counted every NACK
	// it has seen every request.
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool { return s.NackRequests() == n }, "NACKs counted: %d of %d", s.NackRequests(), n)
	if ns := s.Nacks(); len(ns) != 1 || ns[0].TypeURL != resource.ListenerType || len(ns[0].Detail) > maxNackDetail+16 {
		t.Fatalf("outstanding NACKs %d (want the listener one), first detail %d bytes", len(ns), len(ns[0].Detail))
	}
	if err := s.nackError(nil); err == nil || len(err.Error()) > 2*maxNackDetail {
		t.Fatalf("readiness report of %d bytes", len(fmt.Sprint(err)))
	}
	if got := metricLabels(reg, "meshgate_xds_nacks_total"); len(got) != 1 || got[0] != resource.ListenerType {
		t.Fatalf("nacks_total type_url labels %d: %.200v", len(got), got)
	}
	s.nackMu.Lock()
	acks := len(s.acks)
	s.nackMu.Unlock()
	if acks != 0 {
		t.Fatalf("%d ACK entries, none was ACKed", acks)
	}
	// One Error line for the rejected version; the refusals' Warn lines
	// (at most one per reason per 10 s): unknown_type.
	if w := warns.Load(); w > 2 {
		t.Fatalf("%d log lines at Warn or above", w)
	}
}

// TestAttackDeltaSubscriptionGrowth: a delta subscription accumulates
// over requests; a client adding names a request at a time is cut off
// (ResourceExhausted, counted too_many_names) once it holds more than
// MaxSubscribedBytes, though every request is small. Unsubscribing keeps
// a well-behaved stream under the bound however long it lives.
func TestAttackDeltaSubscriptionGrowth(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, addr := serveForTest(t, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"), reg)
	_ = s
	c := adsClient(t, addr, insecure.NewCredentials())
	ctx := testkit.Context(t, 20*time.Second)
	batch := func(from int) []string {
		out := make([]string, 1000)
		for i := range out {
			out[i] = fmt.Sprintf("%063d", from+i) // 63 bytes a name
		}
		return out
	}
	node := &core.Node{Id: "delta-1"}

	// Churn: subscribe a batch, unsubscribe it; 40 × 63 KB never held.
	churn, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		b := batch(i * 1000)
		for _, r := range []*discovery.DeltaDiscoveryRequest{
			{Node: node, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: b},
			{Node: node, TypeUrl: resource.ClusterType, ResourceNamesUnsubscribe: b},
		} {
			if err := churn.Send(r); err != nil {
				t.Fatalf("churn %d: %v", i, err)
			}
		}
	}
	if err := churn.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"grpc/svc"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := churn.Recv(); err != nil || len(r.GetResources()) != 1 {
		t.Fatalf("after churning 40,000 names: %v %v", r, err)
	}

	grow, err := c.DeltaAggregatedResources(testkit.Context(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var gerr error
	for i := 0; i < 2*MaxSubscribedBytes/63000 && gerr == nil; i++ {
		gerr = grow.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNamesSubscribe: batch(i * 1000)})
	}
	if gerr == nil {
		gerr = grow.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"grpc/svc"}})
	}
	var rerr error
	for rerr == nil {
		_, rerr = grow.Recv()
	}
	if status.Code(rerr) != codes.ResourceExhausted {
		t.Fatalf("growing subscription: %v (send: %v), want ResourceExhausted", rerr, gerr)
	}
	if n := refusedCount(reg, RefusedTooManyNames); n != 1 {
		t.Fatalf("refused{too_many_names} = %v", n)
	}
}

// TestAttackDeltaBogusNonces: delta requests with response nonces the
// server never sent and made-up initial resource versions record no ACK
// and break nothing: the stream is answered with the real resources.
func TestAttackDeltaBogusNonces(t *testing.T) {
	s, addr := serveForTest(t, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"), nil)
	ctx := testkit.Context(t, 20*time.Second)
	st, err := adsClient(t, addr, insecure.NewCredentials()).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "delta-1"}
	for i := range 50 {
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ListenerType,
			ResponseNonce: fmt.Sprintf("forged-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if v := s.AckedVersion("delta-1", resource.ListenerType); v != "" {
		t.Fatalf("forged nonces recorded as an ACK of %q", v)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType,
		ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: map[string]string{"grpc/svc": "forged", "ghost": "1"}}); err != nil {
		t.Fatal(err)
	}
	var r *discovery.DeltaDiscoveryResponse
	for r == nil || r.GetTypeUrl() != resource.ClusterType {
		if r, err = st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "grpc/svc" {
		t.Fatalf("clusters after forged versions: %v", r.GetResources())
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, ctx, 10*time.Millisecond, func() bool { return s.AckedVersion("delta-1", resource.ClusterType) == s.Version() },
		"the real nonce not recorded as an ACK")
	if v := s.AckedVersion("delta-1", resource.ListenerType); v != "" {
		t.Fatalf("forged nonces recorded as an ACK of %q", v)
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
	serveUntilCleanup(t, s)
	ctx := testkit.Context(t, 60*time.Second)
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}

	// subscribe opens an ADS stream for node and asks for every type.
	subscribe := func(node string) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
		st, err := adsClient(t, addr, insecure.NewCredentials()).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range types {
			if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: typ}); err != nil {
				t.Fatal(err)
			}
		}
		return st
	}
	_ = subscribe("a") // node a never reads nor ACKs
	good := subscribe("b")
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

// TestAttackUnauthenticatedFlood: on the mutual-TLS listener, 100
// connections that never start a handshake and 50 that send garbage do
// not keep a client with a certificate from its secrets; the garbage ones
// are counted as refused handshakes.
func TestAttackUnauthenticatedFlood(t *testing.T) {
	s, reg, dial, pki := secureServer(t)
	addr := s.Addr().String()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 150 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i >= 100 {
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("\x16\x03\x01\x00", 64))); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := testkit.Context(t, 10*time.Second)
	if _, err := xdstest.FirstSecrets(ctx, dial(pki.Creds(t, "idc")), "idc"); err != nil {
		t.Fatalf("idc during the flood: %v", err)
	}
	testkit.Eventually(t, ctx, 20*time.Millisecond, func() bool { return refusedCount(reg, RefusedHandshake) >= 50 },
		"refused{handshake} = %v, want >= 50", refusedCount(reg, RefusedHandshake))
}

// TestAttackDeltaNonceFlood: a delta client that makes the server answer
// thousands of times and never ACKs must not make the server forget
// another stream's outstanding nonce (before, the nonce table was
// cleared for every stream once it held 4096 entries, so the other
// node's ACK was not recognized and make-before-break waited for it).
func TestAttackDeltaNonceFlood(t *testing.T) {
	s, addr := serveForTest(t, proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201"), nil)
	ctx := testkit.Context(t, 30*time.Second)
	c := adsClient(t, addr, insecure.NewCredentials())

	good, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := good.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "delta-1"}, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	first, err := good.Recv()
	if err != nil {
		t.Fatal(err)
	}

	flood, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "client-1"}
	const n = 4500 // a response each (the unsubscribe is not answered)
	go func() {
		for range n {
			for _, r := range []*discovery.DeltaDiscoveryRequest{
				{Node: node, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"grpc/svc"}},
				{Node: node, TypeUrl: resource.ClusterType, ResourceNamesUnsubscribe: []string{"grpc/svc"}},
			} {
				if flood.Send(r) != nil {
					return
				}
			}
		}
	}()
	got := 0
	for got < 4200 {
		if _, err := flood.Recv(); err != nil {
			t.Fatalf("flood stream after %d responses: %v", got, err)
		}
		got++
	}
	if err := good.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: first.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, testkit.Context(t, 5*time.Second), 10*time.Millisecond, func() bool { return s.AckedVersion("delta-1", resource.ClusterType) == s.Version() },
		"delta-1's ACK not recognized after %d unACKed responses to another stream", got)
}

// TestAttackStrangerHoldsNoStream: a certificate signed by the xDS CA but
// listed for no node is refused PermissionDenied when its stream opens,
// before any request (before, the stream stayed open, counted, waiting
// for a first request that could only be refused); none is held.
func TestAttackStrangerHoldsNoStream(t *testing.T) {
	s, reg, dial, pki := secureServer(t)
	stranger := dial(pki.Creds(t, "stranger"))
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := stranger.StreamAggregatedResources(ctx)
		if err == nil {
			_, err = st.Recv() // no request sent
		}
		cancel()
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("stranger stream %d: %v, want PermissionDenied at open", i, err)
		}
	}
	if n := refusedCount(reg, RefusedIdentity); n != 5 {
		t.Fatalf("refused{identity_mismatch} = %v, want 5", n)
	}
	s.nackMu.Lock()
	held := len(s.peers)
	s.nackMu.Unlock()
	if held != 0 {
		t.Fatalf("%d streams held", held)
	}
}

// TestAttackConnectionCap: connections past the cap are closed as soon as
// they are accepted (counted too_many_connections) instead of holding a
// descriptor each; once the flood's connections go, clients are served.
func TestAttackConnectionCap(t *testing.T) {
	dir := t.TempDir()
	pki := securePKI(t, dir)
	reg := prometheus.NewRegistry()
	s, addr := listening(t, Options{Registerer: reg}, secureConfig(t, dir, "127.0.0.1:0"))
	const max = 20
	s.maxConns = max
	serveUntilCleanup(t, s)
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for range max {
		c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	extra, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection %d: read %v, want EOF (closed at accept)", max+1, err)
	}
	if n := refusedCount(reg, RefusedTooManyConnections); n != 1 {
		t.Fatalf("refused{too_many_connections} = %v", n)
	}
	for _, c := range silent {
		c.Close()
	}
	silent = nil
	c := adsClient(t, addr, pki.Creds(t, "idc"))
	testkit.Succeeds(t, testkit.Context(t, 10*time.Second), 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := xdstest.FirstSecrets(ctx, c, "idc")
		return err
	}, "idc not served after the flood")
}

// TestLimitsFromConfig: xds.limits reach the listener (0 keeps the
// defaults), and changing them is a transport change (the control plane
// restarts with the new caps).
func TestLimitsFromConfig(t *testing.T) {
	cfg := proxylessConfig(t, "127.0.0.1:0", "127.0.0.1:7201")
	cfg.XDS.Limits = config.XDSLimits{MaxConnections: 7, MaxStreamsPerIdentity: 3}
	s, _ := listening(t, Options{}, cfg)
	s.mu.Lock()
	conns := s.maxConns
	s.mu.Unlock()
	s.nackMu.Lock()
	streams, perID := s.maxStreams, s.maxPerIdentity
	s.nackMu.Unlock()
	if conns != 7 || perID != 3 || streams != MaxStreams {
		t.Fatalf("caps: %d connections, %d streams, %d per identity; want 7, %d, 3", conns, streams, perID, MaxStreams)
	}
	if s.TransportChanged(xdstest.Model(t, cfg)) {
		t.Fatal("same limits: reported a transport change")
	}
	cfg.XDS.Limits.MaxStreamsPerIdentity = 2000
	if !s.TransportChanged(xdstest.Model(t, cfg)) {
		t.Fatal("new limits: no transport change")
	}
}
