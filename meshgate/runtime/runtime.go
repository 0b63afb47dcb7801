// Package runtime is MeshGate's composition root: from a *config.Config it
// builds the upstream pools, the listeners (private → inbound, grpc →
// grpc.Server with the outbound handler, health and reflection) and the
// admin server, and it owns their lifecycle: hot reload and drain.
//
// Reload builds a new immutable routing table per listener and swaps it
// atomically; requests in flight finish on the table (and pools) they
// started with. Upstream pools whose config is unchanged are kept; dropped
// ones are retired and close after their last call. Listeners are added,
// replaced (when their socket-level settings change) and removed.
//
// A reload is a build step followed by a commit. The build step touches
// nothing live: new pools are dialled but not routed to, new listeners are
// built on newly bound sockets where the address changed and on a new view
// of the live socket where it did not (see socket), route tables are
// prepared but not installed. Any error aborts: only what the build step
// created is closed, and every listener, pool and xDS resource is left as it
// was. A config that fails validation or cannot be built is rejected with an
// error naming the field, and the running config keeps serving. Check is
// the validation every (re)load starts with and `meshgate validate` prints.
//
// Readiness (/readyz) needs every listener bound and, per the config's
// readiness mode, the upstreams connected (health.go); gRPC listeners serve
// grpc.health.v1 per routed service. Shutdown turns readiness and health
// off at once, keeps gRPC listeners accepting for defaults.drain_grace, then
// drains. The served config's generation, hash and last reload outcome are
// exported as metrics and on /config (status.go).
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/codec"
	_ "github.com/meshgate/meshgate/codec/mgp" // registers "mgp"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/inbound"
	"github.com/meshgate/meshgate/meshgate/telemetry"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// Errors.
var (
	ErrClosed   = errors.New("runtime: shut down")
	ErrRejected = errors.New("runtime: config rejected")
)

// Options configure a Runtime.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Metrics; nil creates a fresh set.
	Metrics *admin.Metrics
	// NoAdmin skips the admin HTTP listener (Admin() still works for
	// readiness checks and Handler()).
	NoAdmin bool
	// DrainQuiet is passed to private listeners (see inbound.Options).
	DrainQuiet time.Duration
	// WarmUp bounds how long a (re)load waits for new private upstream
	// pools to connect before switching traffic to them; default 2s,
	// negative = don't wait.
	WarmUp time.Duration
	// OnReload, when set, is called after each applied reload, once the
	// xDS plane was synced (e.g. to publish BoundAddrs again).
	OnReload func()
}

// Runtime runs one MeshGate instance.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	metrics *admin.Metrics
	admin   *admin.Server
	status  *configStatus

	mu        sync.Mutex // serializes Reload and Shutdown
	cfg       atomic.Pointer[config.Config]
	pools     map[string]*grpcpool.Pool
	priv      privatePools
	retired   retiredSet // dropped upstreams finishing their calls
	listeners map[string]*listener
	closed    bool
	draining  atomic.Bool
	wg        sync.WaitGroup

	healthStop chan struct{} // see health.go
	healthDone chan struct{}
	healthOnce sync.Once
	upstreams  atomic.Pointer[upstreamSet] // committed pools, for readiness

	tel   telemetry.Hub // spans and access log (telemetry.go)
	gm    *telemetry.GRPCMetrics
	descs descCache // descriptor sets (descriptors.go)

	xdsSync  sync.Mutex // serializes syncXDS and stopXDS (see xds.go)
	xdsMu    sync.Mutex // guards xdsPlane only; never held across a push
	xdsPlane *xdsPlane

	replay replayShare // nonces of every private listener (see auth.go)
	mig    migration   // splits, shadows, overrides (see migrate.go)
	push   pushHub     // push delivery to private listeners' connections (see push.go)

	res resilienceRT // guards' metrics, service switches (resilience.go)
}

// New builds and starts everything cfg describes. On error nothing is left
// running.
func New(cfg *config.Config, opts Options) (*Runtime, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = admin.NewMetrics()
	}
	if opts.WarmUp == 0 {
		opts.WarmUp = 2 * time.Second
	}
	r := &Runtime{
		opts:      opts,
		log:       opts.Logger.With("component", "runtime"),
		metrics:   opts.Metrics,
		pools:     map[string]*grpcpool.Pool{},
		listeners: map[string]*listener{},
		status:    newConfigStatus(opts.Metrics.Registry),
	}
	r.priv.init()
	r.initMigration()
	if err := r.res.init(r.metrics.Registry); err != nil {
		return nil, err
	}
	r.admin = admin.New(r.metrics, r.configView, opts.Logger.With("component", "admin"), admin.WithPprof(cfg.Admin.PProf), admin.WithMigrate(r.mig.c),
		admin.WithHandler("/switches", r.res.handler()), admin.WithHandler("/switches/", r.res.handler()))
	r.admin.SetReadiness("listeners", r.listenersReady)
	if err := r.startGRPCMetrics(cfg); err != nil {
		return nil, err
	}
	if err := r.apply(cfg, true); err != nil {
		return nil, err
	}
	r.status.applied(cfg)
	r.startMigration()
	r.admin.SetReadiness("upstreams", r.upstreamsReady)
	r.startHealth()
	if !opts.NoAdmin {
		if err := r.listenAdmin(cfg.Admin); err != nil {
			r.Close()
			return nil, err
		}
	}
	if err := r.syncXDS(cfg); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Parse parses YAML config data (dir resolves relative paths). There is
// no built-in default config: the demo's lives in meshgate-dev.
func Parse(data []byte, dir string) (*config.Config, error) {
	return config.Parse(data, dir)
}

// configView is what /config shows: the served config (durations as
// "30s", secrets omitted) and its status (generation, hash, last reload).
func (r *Runtime) configView() any {
	v := map[string]any{"status": r.status.view()}
	if cfg := r.cfg.Load(); cfg != nil {
		v["config"] = cfg.View()
	}
	v["migrate_overrides"] = r.mig.c.Overrides.List()
	return v
}

// Config returns the running config.
func (r *Runtime) Config() *config.Config { return r.cfg.Load() }

// Metrics returns the metrics.
func (r *Runtime) Metrics() *admin.Metrics { return r.metrics }

// Admin returns the admin server (e.g. to add readiness checks).
func (r *Runtime) Admin() *admin.Server { return r.admin }

// AdminAddr is the admin listener's address (nil with NoAdmin).
func (r *Runtime) AdminAddr() net.Addr { return r.admin.Addr() }

// Addr returns the bound address of the named listener, or nil.
func (r *Runtime) Addr(name string) net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.listeners[name]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// Pool returns the named gRPC upstream pool (tests, introspection).
func (r *Runtime) Pool(name string) *grpcpool.Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pools[name]
}

// listenersReady fails once draining (Shutdown and Close set draining
// before closing anything). It takes no lock, so /readyz answers at once
// even while a reload is warming up new pools.
func (r *Runtime) listenersReady() error {
	if r.draining.Load() {
		return fmt.Errorf("%w: draining", admin.ErrNotReady)
	}
	return nil
}

// Reload switches to cfg. A config that does not validate, or whose parts
// cannot be built (a listener address already in use, a bad certificate), is
// rejected: the error names the field and the running config is untouched.
func (r *Runtime) Reload(cfg *config.Config) error {
	err := r.apply(cfg, false)
	outcome := "ok"
	if err != nil {
		outcome = "rejected"
		if !errors.Is(err, ErrClosed) {
			r.status.rejected(err)
		}
		r.log.Warn("config reload rejected", "err", err)
	} else {
		r.status.applied(cfg)
		r.log.Info("config reloaded", "listeners", len(cfg.Listeners), "upstreams", len(cfg.Upstreams), "hash", ConfigHash(cfg))
		_ = r.syncXDS(cfg) // failures are logged and fail the "xds" readiness check
		if r.opts.OnReload != nil {
			r.opts.OnReload()
		}
	}
	r.metrics.Reloads.WithLabelValues(outcome).Inc()
	return err
}

// ReloadFile loads path and reloads it.
func (r *Runtime) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		r.metrics.Reloads.WithLabelValues("rejected").Inc()
		r.status.rejected(err)
		r.log.Warn("config reload rejected", "file", path, "err", err)
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return r.Reload(cfg)
}

// apply builds everything new that cfg needs, then commits: swap tables,
// start new listeners, stop removed ones, retire dropped pools.
func (r *Runtime) apply(cfg *config.Config, initial bool) error {
	if cfg == nil {
		return fmt.Errorf("%w: nil config", ErrRejected)
	}
	if err := Check(cfg); err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.draining.Load() {
		return ErrClosed
	}
	old := r.cfg.Load()
	if !initial && old != nil && (old.Admin.Address != cfg.Admin.Address || old.Admin.HealthAddress != cfg.Admin.HealthAddress || old.Admin.PProf != cfg.Admin.PProf) {
		r.log.Warn("admin.* changes need a restart; keeping", "address", old.Admin.Address)
	}

	codecs, err := buildCodecs(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}

	// 1. Pools: keep unchanged ones, build new ones.
	st := &staged{codecs: codecs, codecsChanged: changedCodecs(old, cfg), pools: map[string]*grpcpool.Pool{}, listeners: map[string]*listener{}}
	gen := r.mig.c.Begin()
	fail := func(err error) error {
		r.mig.c.Abort(gen)
		st.abort(r)
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	for i := range cfg.Upstreams {
		u := cfg.Upstreams[i]
		if u.Protocol != config.ProtoGRPC {
			continue
		}
		u.TLS = cfg.ResolveTLS(u.TLS)
		if p := r.pools[u.Name]; p != nil && p.Same(u) && sameUpstreamLimits(old, u) {
			st.pools[u.Name] = p
			continue
		}
		p, err := grpcpool.New(u, grpcpool.Options{
			Conns:       r.metrics.UpstreamConns.WithLabelValues(u.Name, "clientconn"),
			Transports:  r.metrics.UpstreamConns.WithLabelValues(u.Name, "transport"),
			TLSRefresh:  cfg.TLS.RefreshInterval,
			DialOptions: r.upstreamDialOptions(&u),
			Meter:       r.gm.MeterProvider(),
			Resilience:  r.res.guardOptions(u.Name, r.opts.Logger),
			Registerer:  r.metrics.Registry,
		})
		if err != nil {
			return fail(fmt.Errorf("upstreams[%d]: %w", i, err))
		}
		st.pools[u.Name] = p
		st.newPools = append(st.newPools, p)
	}
	warmed := r.warmUp(st.newPools)
	err = r.priv.stage(r.buildDeps(), cfg, st)
	<-warmed
	if err != nil {
		return fail(err)
	}

	sets, err := r.stageDescriptors(cfg)
	if err != nil {
		return fail(err)
	}

	// 2. Listeners: tables for every private listener; sockets for new or
	// changed ones.
	switches := r.res.stageSwitches(cfg)
	for i := range cfg.Listeners {
		lc := cfg.Listeners[i]
		cur := r.listeners[lc.Name]
		reuse := cur != nil && cur.sameSocket(&lc) && !st.codecChanged(lc.Codec)
		var tbl *inbound.Table
		var cd codec.Codec
		if lc.Kind == config.KindPrivate {
			var err error
			cd, err = codecs.get(lc.Codec, lc.MaxFrameSize)
			if err != nil {
				return fail(fmt.Errorf("%w: listeners[%d].codec: %w", config.ErrInvalid, i, err))
			}
			tbl, err = inbound.TableFromConfig(&lc, cfg.Defaults, st.target, r.metrics, inbound.WithMigration(r.mig.c))
			if err == nil {
				tbl.AttachSwitches(switches)
				err = attachBodies(tbl, &lc, i, sets[lc.Name])
			}
			if err != nil {
				return fail(fmt.Errorf("listeners[%d]: %w", i, err))
			}
		}
		if reuse {
			st.updates = append(st.updates, update{l: cur, cfg: lc, table: tbl})
			st.listeners[lc.Name] = cur
			continue
		}
		nl, err := r.newListener(lc, cfg, cd, tbl, st, cur)
		if err != nil {
			return fail(fmt.Errorf("listeners[%d]: %w", i, err))
		}
		st.listeners[lc.Name] = nl
		st.newListeners = append(st.newListeners, nl)
	}

	// Kept grpc listeners get their new routes last (undone on abort).
	for _, u := range st.updates {
		if _, isGRPC := u.l.srv.(*grpcServer); isGRPC {
			if err := r.priv.prepareUpdate(u.l, u.cfg, st); err != nil {
				return fail(fmt.Errorf("listener %s: %w", u.cfg.Name, err))
			}
		}
	}

	ts, err := r.stageTelemetry(old, cfg)
	if err != nil {
		return fail(err)
	}

	if err := r.mig.c.Configure(&cfg.Migrate); err != nil {
		return fail(fmt.Errorf("%w: migrate.state_file: %w", config.ErrInvalid, err))
	}

	// 3. Commit.
	r.commitTelemetry(ts, cfg.Defaults.DrainTimeout)
	for _, u := range st.updates {
		u.l.update(u.cfg, u.table)
	}
	for name, l := range r.listeners {
		if st.listeners[name] != l {
			r.stopListener(l, cfg.Defaults.DrainTimeout)
		}
	}
	for _, l := range st.newListeners {
		r.startListener(l)
	}
	r.listeners = st.listeners
	r.commitDescriptors(cfg, sets)
	for name, p := range r.pools {
		if st.pools[name] != p {
			r.retired.retire(p, cfg.Defaults.DrainTimeout)
		}
	}
	r.pools = st.pools
	r.commitPush(cfg)
	r.priv.commit(st, &r.retired, cfg.Defaults.DrainTimeout)
	r.snapshotUpstreams()
	r.cfg.Store(cfg)
	r.mig.c.Commit(gen)
	return nil
}

// warmUp gives new gRPC pools up to Options.WarmUp to connect before
// traffic moves to them (in the background; the channel closes when done).
// An upstream that stays down is not an error: it may come up later, and
// readiness reports it meanwhile.
func (r *Runtime) warmUp(pools []*grpcpool.Pool) <-chan struct{} {
	done := make(chan struct{})
	if len(pools) == 0 || r.opts.WarmUp <= 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.WarmUp)
		defer cancel()
		var wg sync.WaitGroup
		for _, p := range pools {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.WaitReady(ctx); err != nil {
					r.log.Warn("grpc upstream not connected yet", "upstream", p.Name(), "err", err)
				}
			}()
		}
		wg.Wait()
	}()
	return done
}

// staged is what apply builds before committing.
type staged struct {
	codecs        codecSet
	codecsChanged map[string]bool
	pools         map[string]*grpcpool.Pool
	newPools      []*grpcpool.Pool
	listeners     map[string]*listener
	newListeners  []*listener
	updates       []update
	priv          *privStaged
}

// set is the staged generation's upstreams of both protocols.
func (st *staged) set() upstream.Set {
	s := upstream.Set{GRPC: st.pools}
	if st.priv != nil {
		s.Private = st.priv.pools
	}
	return s
}

// target resolves a route's upstream name in the staged generation.
func (st *staged) target(name string) inbound.Target {
	if p := st.pools[name]; p != nil {
		return inbound.Target{GRPC: p, Guard: p.Guard()}
	}
	if st.priv != nil {
		if p := st.priv.pools[name]; p != nil {
			return inbound.Target{Private: p}
		}
	}
	return inbound.Target{}
}

type update struct {
	l     *listener
	cfg   config.Listener
	table *inbound.Table
}

func (st *staged) abort(r *Runtime) {
	for _, l := range st.newListeners {
		l.abort()
	}
	for _, p := range st.newPools {
		_ = p.Close()
	}
	r.priv.abort(st)
}

// Shutdown drains: readiness fails at once, listeners stop accepting,
// open connections finish what is in flight (private listeners also wait
// for clients to go quiet; gRPC listeners stop gracefully), bounded by
// Defaults.DrainTimeout and ctx; then everything is closed.
func (r *Runtime) Shutdown(ctx context.Context) error {
	r.draining.Store(true)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	cfg := r.cfg.Load()
	ls := make([]*listener, 0, len(r.listeners))
	for _, l := range r.listeners {
		ls = append(ls, l)
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, cfg.Defaults.DrainTimeout)
	defer cancel()
	r.log.Info("draining", "listeners", len(ls), "timeout", cfg.Defaults.DrainTimeout)
	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.shutdown(ctx, cfg.Defaults.DrainGrace)
		}()
	}
	wg.Wait()
	r.closeAll()
	err := errors.Join(errs...)
	if err != nil {
		r.log.Warn("drain timed out; closed the rest", "err", err)
	} else {
		r.log.Info("drained")
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	_ = r.admin.Shutdown(actx)
	return err
}

// Close stops everything at once.
func (r *Runtime) Close() {
	r.draining.Store(true)
	r.closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.admin.Shutdown(ctx)
}

func (r *Runtime) closeAll() {
	r.stopHealth()
	r.stopMigration()
	r.stopXDS()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	for _, l := range r.listeners {
		l.abort()
	}
	r.wg.Wait()
	for _, p := range r.pools {
		_ = p.Close()
	}
	r.priv.close()
	r.retired.close()
	r.stopTelemetry()
}

// sameListenerSocket reports whether two listener configs can share one
// socket and server (only routes/limits differ).
func sameListenerSocket(a, b *config.Listener) bool {
	return a.Kind == b.Kind && a.Address == b.Address && a.Codec == b.Codec &&
		a.MaxFrameSize == b.MaxFrameSize && reflect.DeepEqual(a.TLS, b.TLS) && reflect.DeepEqual(a.Limits, b.Limits) && sameMsgLimits(a, b) &&
		a.GRPCTransport == b.GRPCTransport
}

// listenAdmin binds the admin listener and, when configured, the health
// listener (probes and scrapes; never /config or pprof).
func (r *Runtime) listenAdmin(a config.Admin) error {
	if err := r.admin.Listen(a.Address); err != nil {
		return err
	}
	if !a.IsLoopback() {
		r.log.Warn("admin listens beyond loopback: /config and pprof (if enabled) are reachable from the network", "address", a.Address)
	}
	if a.HealthAddress != "" {
		if err := r.admin.ListenHealth(a.HealthAddress); err != nil {
			return err
		}
	}
	return nil
}
