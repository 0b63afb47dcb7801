package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/meshgate/meshgate/xds/model"
)

// Options configure a Server.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives meshgate_xds_* metrics; nil = not registered.
	Registerer prometheus.Registerer
	// Address overrides the model's server address (e.g. "127.0.0.1:0").
	Address string
}

// Server is the embedded control plane. Update feeds it configs; Serve
// runs the ADS gRPC server and the certificate file watcher.
type Server struct {
	log   *slog.Logger
	opts  Options
	cache cache.SnapshotCache
	xds   serverv3.Server
	// access is the node/identity table of the current config;
	// requireTLS is set while ADS is served over mutual TLS.
	access atomic.Pointer[accessTable]
	// proxyless: the proxyless gRPC node ids of the current config, whose
	// NACKs do not fail NackCheck (see there)
	proxyless  atomic.Pointer[map[string]bool]
	requireTLS atomic.Bool

	start   string // process-start component of versions
	counter atomic.Uint64

	mu         sync.Mutex // guards model, files, res, snapped, ln; held for a whole push
	model      *model.XDS // the last model pushed (a private copy)
	files      Files
	res        map[string]*Resources // what was pushed last, by node
	version    atomic.Pointer[string]
	snapped    map[string]bool
	ln         net.Listener
	grpc       *grpc.Server
	creds      credentials.TransportCredentials // nil: plaintext (unix socket or xds.insecure)
	listened   *model.Server                    // the server settings the listener was opened with
	closeCreds func()

	nackMu  sync.Mutex
	nacks   map[nackKey]nackInfo
	streams map[streamKey]string // stream → node id
	peers   map[streamKey]peerIdentity
	acks    map[nackKey]string // (node, type) → last version ACKed
	// lagging: nodes that let a make-before-break phase time out; later
	// phases do not wait for them until they ACK again (one stuck client
	// would otherwise hold every reload for the whole bound).
	lagging map[string]bool
	// deltaSubs: what each delta stream is subscribed to (limits.go).
	deltaSubs map[int64]*deltaNames
	nonces    map[int64]map[string]string // delta stream → response nonce → snapshot version

	// phaseTimeout bounds each make-before-break phase's wait for ACKs;
	// phaseSettle is waited after a phase was ACKed.
	phaseTimeout time.Duration
	phaseSettle  time.Duration
	maxConns     int // MaxConnections (tests lower it before Serve)
	// maxStreams, maxPerIdentity: MaxStreams, MaxStreamsPerIdentity
	// (read under nackMu; tests lower them).
	maxStreams, maxPerIdentity int

	nackReqs   atomic.Uint64 // every request carrying error_detail
	nackTotal  *prometheus.CounterVec
	pushes     prometheus.Counter
	connected  prometheus.Gauge
	refused    *prometheus.CounterVec
	refusedLog map[string]*atomic.Int64 // reason → last log time (unix nanos)

	closeOnce sync.Once
	closed    chan struct{}
}

type nackKey struct{ node, typeURL string }

// streamKey: the SotW and the delta server number their streams
// independently.
type streamKey struct {
	delta bool
	id    int64
}

type nackInfo struct {
	version string // the snapshot version that was rejected
	detail  string
}

// NewServer creates a control plane with nothing to serve yet.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:            opts.Logger.With("component", "xds"),
		opts:           opts,
		start:          strconv.FormatInt(time.Now().UnixNano(), 36),
		nacks:          map[nackKey]nackInfo{},
		streams:        map[streamKey]string{},
		peers:          map[streamKey]peerIdentity{},
		acks:           map[nackKey]string{},
		lagging:        map[string]bool{},
		deltaSubs:      map[int64]*deltaNames{},
		nonces:         map[int64]map[string]string{},
		closed:         make(chan struct{}),
		phaseTimeout:   5 * time.Second,
		phaseSettle:    250 * time.Millisecond,
		maxConns:       MaxConnections,
		maxStreams:     MaxStreams,
		maxPerIdentity: MaxStreamsPerIdentity,
		nackTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_xds_nacks_total", Help: "xDS responses rejected by a client (NACK), by resource type.",
		}, []string{"type_url"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshgate_xds_snapshots_total", Help: "Snapshots set on the xDS cache.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshgate_xds_streams", Help: "Open xDS streams.",
		}),
	}
	s.access.Store(newAccessTable(nil))
	s.refused, s.refusedLog = newRefusedCounter()
	if r := opts.Registerer; r != nil {
		// A control plane restarted by the runtime (new address or TLS
		// settings) keeps counting in the collectors already registered.
		s.nackTotal = register(r, s.log, s.nackTotal)
		s.pushes = register(r, s.log, s.pushes)
		s.connected = register(r, s.log, s.connected)
		s.refused = register(r, s.log, s.refused)
	}
	s.cache = &nackSafeCache{SnapshotCache: cache.NewSnapshotCache(true, nodeHash{s}, cacheLogger{s.log}), hash: nodeHash{s}}
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc:         func(ctx context.Context, id int64, _ string) error { return s.streamOpened(ctx, streamKey{false, id}) },
		StreamClosedFunc:       func(id int64, _ *core.Node) { s.connected.Dec(); s.forget(streamKey{false, id}) },
		DeltaStreamOpenFunc:    func(ctx context.Context, id int64, _ string) error { return s.streamOpened(ctx, streamKey{true, id}) },
		DeltaStreamClosedFunc:  func(id int64, _ *core.Node) { s.connected.Dec(); s.forget(streamKey{true, id}) },
		StreamRequestFunc:      s.onRequest,
		StreamDeltaRequestFunc: s.onDeltaRequest,
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			s.nackMu.Lock()
			m := s.nonces[id]
			if m == nil {
				m = map[string]string{}
				s.nonces[id] = m
			}
			if len(m) >= maxNoncesPerStream { // a client that never ACKs: forget its own, nobody else's
				clear(m)
			}
			m[resp.GetNonce()] = resp.GetSystemVersionInfo()
			s.nackMu.Unlock()
		},
	}
	// One XDSOption sets Ordered for both the SotW and the delta server.
	s.xds = serverv3.NewServer(context.Background(), s.cache, cb, sotw.WithOrderedADS())
	return s
}

// register registers c, or returns the identical collector registered
// before (by an earlier Server on the same registry).
func register[T prometheus.Collector](r prometheus.Registerer, log *slog.Logger, c T) T {
	err := r.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if e, ok := are.ExistingCollector.(T); ok {
			return e
		}
	}
	log.Warn("metric not registered", "err", err)
	return c
}

// nodeHash maps Envoy node ids of the config to themselves, declared
// proxyless nodes to ProxylessNode and anything else to refusedNode (which
// never has a snapshot; such streams are refused before they get here).
type nodeHash struct{ s *Server }

// refusedNode is the cache key of undeclared node ids: never snapshotted.
const refusedNode = "_refused"

func (h nodeHash) ID(n *core.Node) string {
	t := h.s.access.Load()
	switch id := n.GetId(); {
	case t.envoy[id]:
		return id
	case t.proxyless[id]:
		return ProxylessNode
	}
	return refusedNode
}

// nackSafeCache keeps the SotW snapshot cache from answering a NACK with
// the very version just rejected (which would loop): a request carrying
// error_detail is treated as if it named the current version, so the
// watch stays open until a newer snapshot is set.
type nackSafeCache struct {
	cache.SnapshotCache
	hash cache.NodeHash
}

func (c *nackSafeCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	if req.GetErrorDetail() != nil {
		if snap, err := c.GetSnapshot(c.hash.ID(req.GetNode())); err == nil {
			if v := snap.GetVersion(req.GetTypeUrl()); v != "" {
				r := proto.Clone(req).(*discovery.DiscoveryRequest)
				r.VersionInfo = v
				req = r
			}
		}
	}
	return c.SnapshotCache.CreateWatch(req, sub, ch)
}

// Version is the version of the last snapshot set ("" before Update).
func (s *Server) Version() string {
	if v := s.version.Load(); v != nil {
		return *v
	}
	return ""
}

func (s *Server) nextVersion() string {
	return s.start + "-" + strconv.FormatUint(s.counter.Add(1), 10)
}

// readFiles reads every certificate file m references.
func readFiles(m *model.XDS) (Files, error) {
	files := Files{}
	var errs []error
	for _, p := range CertFiles(m) {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %v", ErrMissingFile, err))
			continue
		}
		files[p] = b
	}
	if len(errs) == 0 {
		// A rotation that rewrites the certificate and the key one after
		// the other can be caught half-way: never publish a pair that does
		// not match (Envoy would NACK it); the next poll sees both.
		for _, t := range secretTLS(m) {
			c := t.Certificate
			if c == nil {
				continue
			}
			if _, err := tls.X509KeyPair(files[c.CertFile], files[c.KeyFile]); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s and %s: %v", ErrKeyPair, c.CertFile, c.KeyFile, err))
			}
		}
	}
	return files, errors.Join(errs...)
}

// defaultCertPoll re-reads certificate files of a model without a cert
// poll interval (the config's default is the same).
const defaultCertPoll = time.Second

// ErrKeyPair: a certificate file and its key file do not form a pair (yet).
var ErrKeyPair = errors.New("xds: certificate and key do not match")

// Update translates m and pushes a new snapshot (new version) to every
// node. On error nothing is pushed and the previous snapshots stay. The
// server keeps a copy of m; the caller may reuse it.
func (s *Server) Update(m *model.XDS) error {
	if m == nil {
		return ErrNoXDS
	}
	m = m.Clone()
	files, err := readFiles(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushLocked(m, files)
}

func (s *Server) pushLocked(m *model.XDS, files Files) error {
	res, err := Translate(m, files)
	if err != nil {
		return err
	}
	// Validate the final state before touching anything.
	if _, err := s.snapshots(res, "check"); err != nil {
		return err
	}
	nodes := newAccessTable(m)
	// Make-before-break when clusters come or go: first add the new
	// clusters (with their endpoints and secrets) beside the old ones
	// under the old listeners and routes; then switch listeners and
	// routes; only then drop clusters nothing references any more.
	// Each phase waits (bounded) for the connected nodes to ACK it.
	if old := s.res; old != nil && clustersChanged(old, res) {
		union := map[string]*Resources{}
		switched := map[string]*Resources{}
		for node, r := range res {
			o := old[node]
			if o == nil {
				union[node], switched[node] = r, r
				continue
			}
			merged := &Resources{
				Clusters:  unionByName(o.Clusters, r.Clusters),
				Endpoints: unionByName(o.Endpoints, r.Endpoints),
				Secrets:   unionByName(o.Secrets, r.Secrets),
			}
			union[node] = &Resources{Clusters: merged.Clusters, Endpoints: merged.Endpoints, Secrets: merged.Secrets, Listeners: o.Listeners, Routes: o.Routes}
			switched[node] = &Resources{Clusters: merged.Clusters, Endpoints: merged.Endpoints, Secrets: merged.Secrets, Listeners: r.Listeners, Routes: r.Routes}
		}
		prev := old
		for i, phase := range []map[string]*Resources{union, switched} {
			v, err := s.set(phase, nodes)
			if err != nil {
				return err
			}
			s.waitAcked(v, prev, phase, fmt.Sprintf("phase %d/3", i+1))
			prev = phase
		}
	}
	v, err := s.set(res, nodes)
	if err != nil {
		return err
	}
	s.model, s.files, s.res = m, files, res
	pl := make(map[string]bool, len(m.Proxyless.Nodes))
	for _, n := range m.Proxyless.Nodes {
		pl[n.ID] = true
	}
	s.proxyless.Store(&pl)
	s.log.Info("snapshot set", "version", v, "nodes", len(res))
	return nil
}

// snapshots builds consistent snapshots of res at version.
func (s *Server) snapshots(res map[string]*Resources, version string) (map[string]*cache.Snapshot, error) {
	snaps := make(map[string]*cache.Snapshot, len(res))
	for node, r := range res {
		snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
			resource.ClusterType:  r.Clusters,
			resource.EndpointType: r.Endpoints,
			resource.ListenerType: r.Listeners,
			resource.RouteType:    r.Routes,
			resource.SecretType:   r.Secrets,
		})
		if err != nil {
			return nil, fmt.Errorf("xds: node %s: %w", node, err)
		}
		if err := snap.Consistent(); err != nil {
			return nil, fmt.Errorf("xds: node %s: inconsistent snapshot: %w", node, err)
		}
		snaps[node] = snap
	}
	return snaps, nil
}

// set pushes res under a fresh version.
func (s *Server) set(res map[string]*Resources, nodes *accessTable) (string, error) {
	version := s.nextVersion()
	snaps, err := s.snapshots(res, version)
	if err != nil {
		return "", err
	}
	s.access.Store(nodes)
	s.version.Store(&version)
	for node, snap := range snaps {
		if err := s.cache.SetSnapshot(context.Background(), node, snap); err != nil {
			return "", fmt.Errorf("xds: node %s: %w", node, err)
		}
	}
	for node := range s.snapped {
		if snaps[node] == nil {
			s.cache.ClearSnapshot(node)
		}
	}
	s.snapped = map[string]bool{}
	for node := range snaps {
		s.snapped[node] = true
	}
	s.pushes.Inc()
	return version, nil
}

func names(rs []types.Resource) map[string]bool {
	m := make(map[string]bool, len(rs))
	for _, r := range rs {
		m[cache.GetResourceName(r)] = true
	}
	return m
}

func clustersChanged(old, res map[string]*Resources) bool {
	for node, r := range res {
		o := old[node]
		if o == nil {
			continue
		}
		a, b := names(o.Clusters), names(r.Clusters)
		if len(a) != len(b) {
			return true
		}
		for n := range a {
			if !b[n] {
				return true
			}
		}
	}
	return false
}

// unionByName is b plus the resources of a whose names b lacks.
func unionByName(a, b []types.Resource) []types.Resource {
	have := names(b)
	out := append([]types.Resource(nil), b...)
	for _, r := range a {
		if !have[cache.GetResourceName(r)] {
			out = append(out, r)
		}
	}
	return out
}

func sameResources(a, b []types.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	byName := make(map[string]types.Resource, len(a))
	for _, r := range a {
		byName[cache.GetResourceName(r)] = r
	}
	for _, r := range b {
		o, ok := byName[cache.GetResourceName(r)]
		if !ok || !proto.Equal(o, r) {
			return false
		}
	}
	return true
}

// waitAcked waits until every connected Envoy node ACKed version for each
// resource type that changed between prev and cur (a delta stream is only
// sent what changed), or until the phase timeout (then it logs and goes on).
func (s *Server) waitAcked(version string, prev, cur map[string]*Resources, phase string) {
	type want struct{ node, typeURL string }
	var wants []want
	connected := map[string]bool{}
	s.nackMu.Lock()
	for _, n := range s.streams {
		connected[n] = !s.lagging[n]
	}
	s.nackMu.Unlock()
	for node, r := range cur {
		if node == ProxylessNode || !connected[node] {
			continue
		}
		p := prev[node]
		if p == nil {
			p = &Resources{}
		}
		for _, c := range []struct {
			t    string
			a, b []types.Resource
		}{
			{resource.ClusterType, p.Clusters, r.Clusters},
			{resource.EndpointType, p.Endpoints, r.Endpoints},
			{resource.SecretType, p.Secrets, r.Secrets},
			{resource.ListenerType, p.Listeners, r.Listeners},
			{resource.RouteType, p.Routes, r.Routes},
		} {
			if !sameResources(c.a, c.b) {
				wants = append(wants, want{node, c.t})
			}
		}
	}
	deadline := time.Now().Add(s.phaseTimeout)
	for {
		missing := ""
		s.nackMu.Lock()
		rejected := ""
		for _, w := range wants {
			k := nackKey{w.node, w.typeURL}
			if s.acks[k] != version {
				missing = w.node + " " + w.typeURL
				if n, ok := s.nacks[k]; ok && n.version == version {
					rejected = missing
				}
				break
			}
		}
		s.nackMu.Unlock()
		if rejected != "" {
			s.log.Warn("make-before-break phase rejected; continuing", "phase", phase, "version", version, "rejected_by", rejected)
			return
		}
		if missing == "" {
			s.log.Debug("make-before-break phase acknowledged", "phase", phase, "version", version)
			// An ACK means Envoy accepted the resources; a new cluster may
			// still be warming (secrets, first endpoints) and reaching the
			// workers. Give it a moment before the next phase uses it.
			if len(wants) > 0 {
				select {
				case <-s.closed:
				case <-time.After(s.phaseSettle):
				}
			}
			return
		}
		if time.Now().After(deadline) {
			var late []string
			s.nackMu.Lock()
			for _, w := range wants {
				if s.acks[nackKey{w.node, w.typeURL}] != version && !s.lagging[w.node] {
					s.lagging[w.node] = true
					late = append(late, w.node)
				}
			}
			s.nackMu.Unlock()
			s.log.Warn("make-before-break phase not acknowledged in time; continuing without waiting for these nodes until they ACK again",
				"phase", phase, "version", version, "waiting_for", missing, "lagging", late)
			return
		}
		select {
		case <-s.closed:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Snapshot returns the current snapshot of node (for tests and /config).
func (s *Server) Snapshot(node string) (cache.ResourceSnapshot, error) {
	return s.cache.GetSnapshot(node)
}

// RecheckFiles re-reads the certificate files and pushes a new snapshot
// if any changed. Serve calls it every xds.cert_poll.
func (s *Server) RecheckFiles() (changed bool, err error) {
	s.mu.Lock()
	m, old := s.model, s.files
	s.mu.Unlock()
	if m == nil {
		return false, nil
	}
	files, err := readFiles(m)
	if err != nil {
		return false, err // keep serving the last good secrets
	}
	if sameFiles(old, files) {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.model != m { // a config update raced us and read the files itself
		return false, nil
	}
	if err := s.pushLocked(m, files); err != nil {
		return false, err
	}
	s.log.Info("certificate files changed; secrets pushed", "version", s.Version())
	return true, nil
}

func sameFiles(a, b Files) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(w) != string(v) {
			return false
		}
	}
	return true
}

// Listen opens the ADS listener (TCP host:port or unix:/path) without
// serving yet; Serve calls it when it was not called. It returns the
// bound address.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr(), nil
	}
	addr := s.opts.Address
	if addr == "" && s.model != nil {
		addr = s.model.Server.Address.String()
	}
	if addr == "" {
		return nil, fmt.Errorf("xds: no address (call Update first or set Options.Address)")
	}
	if err := s.secureLocked(addr); err != nil {
		return nil, err
	}
	var ln net.Listener
	var err error
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		ln, err = listenUnix(path, s.socketModeLocked())
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		s.releaseCredsLocked()
		return nil, fmt.Errorf("xds: listen %s: %w", addr, err)
	}
	s.ln = ln
	if s.model != nil {
		srv := s.model.Server
		s.listened = &srv
		s.applyLimitsLocked(&srv)
	}
	return ln.Addr(), nil
}

// Addr is the bound ADS address (nil before Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves ADS (and the per-type xDS services) until ctx is done or
// Close is called, and polls the certificate files every xds.cert_poll.
func (s *Server) Serve(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	gopts := serverOptions() // limits.go
	s.mu.Lock()
	if s.creds != nil {
		gopts = append(gopts, grpc.Creds(s.creds))
	}
	s.mu.Unlock()
	g := grpc.NewServer(gopts...)
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	secretservice.RegisterSecretDiscoveryServiceServer(g, s.xds)
	// Published under mu, after checking closed: a Close from now on stops
	// g; one before it is seen here (it closed the listener already).
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		g.Stop()
		return ErrClosed
	default:
	}
	s.grpc = g
	ln := s.ln
	s.mu.Unlock()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.pollFiles(stop)
	}()
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-s.closed:
		case <-stop:
			return
		}
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second): // ADS streams never end by themselves
			g.Stop()
			<-done
		}
	}()
	s.log.Info("xds serving", "addr", ln.Addr().String())
	err := g.Serve(&capListener{Listener: ln, s: s, max: int64(s.maxConns)})
	close(stop)
	wg.Wait()
	s.mu.Lock()
	s.releaseCredsLocked()
	s.mu.Unlock()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

func (s *Server) pollFiles(stop <-chan struct{}) {
	interval := defaultCertPoll
	s.mu.Lock()
	if s.model != nil && s.model.Server.CertPoll > 0 {
		interval = s.model.Server.CertPoll
	}
	s.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-stop:
			return
		case <-s.closed:
			return
		case <-t.C:
		}
		if _, err := s.RecheckFiles(); err != nil {
			if err.Error() != lastErr {
				s.log.Warn("certificate files unreadable; keeping the last secrets", "err", err)
			}
			lastErr = err.Error()
		} else {
			lastErr = ""
		}
	}
}

// releaseCredsLocked closes the listener's certificate provider, if any
// (once); s.mu is held.
func (s *Server) releaseCredsLocked() {
	if s.closeCreds != nil {
		s.closeCreds()
		s.closeCreds = nil
	}
}

// Close stops serving (streams are cut) and frees the listener.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.mu.Lock()
		g, ln := s.grpc, s.ln
		s.mu.Unlock()
		if g != nil {
			g.Stop() // Serve releases the credentials when it returns
		} else {
			if ln != nil {
				ln.Close()
			}
			s.mu.Lock()
			s.releaseCredsLocked()
			s.mu.Unlock()
		}
	})
}

// --- NACK tracking ---------------------------------------------------------

func (s *Server) nodeOf(id streamKey, n *core.Node) string {
	s.nackMu.Lock()
	defer s.nackMu.Unlock()
	if n != nil && n.GetId() != "" {
		s.streams[id] = n.GetId()
	}
	return s.streams[id]
}

func (s *Server) forget(id streamKey) {
	s.nackMu.Lock()
	delete(s.streams, id)
	delete(s.peers, id)
	if id.delta {
		delete(s.deltaSubs, id.id)
		delete(s.nonces, id.id)
	}
	s.nackMu.Unlock()
}

func (s *Server) onRequest(id int64, req *discovery.DiscoveryRequest) error {
	node := s.nodeOf(streamKey{false, id}, req.GetNode())
	if err := s.authorize(streamKey{false, id}, node); err != nil {
		return err
	}
	if !knownType(req.GetTypeUrl()) {
		return s.refuseType(node, req.GetTypeUrl())
	}
	if d := req.GetErrorDetail(); d != nil {
		s.recordNack(node, req.GetTypeUrl(), d.GetMessage())
	} else if req.GetResponseNonce() != "" {
		s.recordAck(node, req.GetTypeUrl(), req.GetVersionInfo())
	}
	return nil
}

func (s *Server) onDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	node := s.nodeOf(streamKey{true, id}, req.GetNode())
	if err := s.authorize(streamKey{true, id}, node); err != nil {
		return err
	}
	if t := req.GetTypeUrl(); t != "" && !knownType(t) { // "": the per-type service's own
		return s.refuseType(node, t)
	}
	if err := s.trackDelta(id, req); err != nil {
		return err
	}
	nonce := req.GetResponseNonce()
	s.nackMu.Lock()
	version, known := s.nonces[id][nonce]
	delete(s.nonces[id], nonce)
	s.nackMu.Unlock()
	if d := req.GetErrorDetail(); d != nil {
		s.recordNack(node, req.GetTypeUrl(), d.GetMessage())
	} else if nonce != "" && known {
		s.recordAck(node, req.GetTypeUrl(), version)
	}
	return nil
}

func (s *Server) recordNack(node, typeURL, detail string) {
	s.nackReqs.Add(1)
	detail = clipDetail(detail)
	version := s.Version()
	k := nackKey{node, typeURL}
	s.nackMu.Lock()
	prev, seen := s.nacks[k]
	s.nacks[k] = nackInfo{version: version, detail: detail}
	s.nackMu.Unlock()
	if seen && prev.version == version {
		return // logged and counted once per rejected version
	}
	s.nackTotal.WithLabelValues(typeURL).Inc()
	s.log.Error("xds NACK: client rejected configuration; it keeps the last accepted one",
		"node", node, "type_url", typeURL, "version", version, "detail", detail)
}

// newer reports whether version a was set after version b by this process.
func (s *Server) newer(a, b string) bool {
	seq := func(v string) (uint64, bool) {
		rest, ok := strings.CutPrefix(v, s.start+"-")
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseUint(rest, 10, 64)
		return n, err == nil
	}
	na, oka := seq(a)
	nb, okb := seq(b)
	return oka && okb && na > nb
}

// recordAck notes that node accepted version of typeURL; an outstanding
// NACK of that type is cleared when a version newer than the rejected one
// is accepted (a delta stream is only sent resources that changed, so the
// accepted version need not be the very latest).
func (s *Server) recordAck(node, typeURL, version string) {
	k := nackKey{node, typeURL}
	s.nackMu.Lock()
	s.acks[k] = version
	delete(s.lagging, node)
	n, had := s.nacks[k]
	if had && s.newer(version, n.version) {
		delete(s.nacks, k)
	} else {
		had = false
	}
	s.nackMu.Unlock()
	if had {
		s.log.Info("xds ACK after NACK: configuration accepted again", "node", node, "type_url", typeURL)
	}
}

// NackRequests counts every request that carried error_detail (a NACK
// answered by re-sending the same version would make it climb in a loop).
func (s *Server) NackRequests() uint64 { return s.nackReqs.Load() }

// AckedVersion is the last version node ACKed for typeURL ("" if none).
func (s *Server) AckedVersion(node, typeURL string) string {
	s.nackMu.Lock()
	defer s.nackMu.Unlock()
	return s.acks[nackKey{node, typeURL}]
}

// Nack describes one outstanding rejection.
type Nack struct {
	Node, TypeURL, Version, Detail string
}

// Nacks lists the outstanding rejections, sorted.
func (s *Server) Nacks() []Nack {
	s.nackMu.Lock()
	out := make([]Nack, 0, len(s.nacks))
	for k, v := range s.nacks {
		out = append(out, Nack{Node: k.node, TypeURL: k.typeURL, Version: v.version, Detail: v.detail})
	}
	s.nackMu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].TypeURL < out[j].TypeURL
	})
	return out
}

// NackCheck is a readiness check: nil while no Envoy node rejects the
// current configuration, an error wrapping ErrNack otherwise. A proxyless
// gRPC client's rejection is logged, counted and listed by Nacks, but does
// not fail it: such a client only consumes the config (its NACK leaves it
// on its last accepted one), and one buggy or hostile replica must not
// take MeshGate out of its Service for every other client. An Envoy
// node's NACK does: that Envoy is part of MeshGate's own data path.
func (s *Server) NackCheck() error {
	var pl map[string]bool
	if p := s.proxyless.Load(); p != nil {
		pl = *p
	}
	return s.nackError(func(node string) bool { return !pl[node] })
}

// nackError reports the outstanding rejections of the nodes include
// accepts (nil: all), an error wrapping ErrNack; nil when there is none.
func (s *Server) nackError(include func(node string) bool) error {
	var parts []string
	for _, n := range s.Nacks() {
		if include != nil && !include(n.Node) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s rejected %s version %s: %s", n.Node, n.TypeURL, n.Version, n.Detail))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNack, strings.Join(parts, "; "))
}

// cacheLogger adapts slog to go-control-plane's logger. Its warnings are
// about requests (a client asking for names the snapshot lacks: one line
// per request, with every requested name), so a client would control
// their rate and size: they go to Debug with the rest; errors stay.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(f string, a ...any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) { // formatting a request's names costs
		c.l.Debug(fmt.Sprintf(f, a...))
	}
}
func (c cacheLogger) Infof(f string, a ...any)  { c.Debugf(f, a...) }
func (c cacheLogger) Warnf(f string, a ...any)  { c.Debugf(f, a...) }
func (c cacheLogger) Errorf(f string, a ...any) { c.l.Error(fmt.Sprintf(f, a...)) }
