package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/telemetry"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// grpcBridge is the handler mounted on a grpc listener (outbound.Server):
// its server options, and the routes a reload prepares and later commits.
type grpcBridge interface {
	ServerOptions() []grpc.ServerOption
	Prepare(l config.Listener, set upstream.Set) (commit func(), err error)
}

// privatePools owns the private-protocol upstream pools (package upstream)
// and builds the gRPC→private bridges (package outbound) of grpc listeners.
//
// A private pool dropped by a reload is retired like a gRPC pool
// (upstream.RetireWithin): it closes after its last in-flight call, at the
// latest DrainTimeout later; Close closes such pools at once.
type privatePools struct {
	pools map[string]*upstream.PrivatePool
	cfgs  map[string]config.Upstream
}

// privStaged is the private side of a staged reload.
type privStaged struct {
	pools    map[string]*upstream.PrivatePool
	cfgs     map[string]config.Upstream
	newPools []*upstream.PrivatePool
	// route tables prepared for kept bridges, installed on commit.
	commits []func()
}

func (p *privatePools) init() {
	p.pools = map[string]*upstream.PrivatePool{}
	p.cfgs = map[string]config.Upstream{}
}

// buildDeps are what the build step needs from the runtime: a logger, the
// metrics, the warm-up bound, the telemetry hub and the descriptor sets of
// listeners. Narrow on purpose: helpers do not see the Runtime.
type buildDeps struct {
	log     *slog.Logger
	metrics *admin.Metrics
	warmUp  time.Duration
	tel     *telemetry.Hub
	descs   func(l *config.Listener) *descset.Set
	mig     *migrate.Controller
	// pushSink returns where a private upstream's PUSH frames go (push.go).
	pushSink func(name string) func(*codec.Frame)
	sw       func() *resilience.Switches
}

func (r *Runtime) buildDeps() buildDeps {
	return buildDeps{log: r.opts.Logger, metrics: r.metrics, warmUp: r.opts.WarmUp, tel: &r.tel, descs: r.descs.get, mig: r.mig.c,
		pushSink: func(name string) func(*codec.Frame) { return r.pushSink(name).handle }, sw: r.res.switches.Load}
}

func (p *privatePools) stage(d buildDeps, cfg *config.Config, st *staged) error {
	ps := &privStaged{pools: map[string]*upstream.PrivatePool{}, cfgs: map[string]config.Upstream{}}
	st.priv = ps
	for i := range cfg.Upstreams {
		u := cfg.Upstreams[i]
		if u.Protocol != config.ProtoPrivate {
			continue
		}
		u.TLS = cfg.ResolveTLS(u.TLS)
		ps.cfgs[u.Name] = u
		if old := p.pools[u.Name]; old != nil && reflect.DeepEqual(p.cfgs[u.Name], u) && !st.codecChanged(u.Codec) {
			ps.pools[u.Name] = old
			continue
		}
		c, err := st.codecs.get(u.Codec, 0)
		if err != nil {
			return fmt.Errorf("%w: upstreams[%d].codec: %w", config.ErrInvalid, i, err)
		}
		pool, err := upstream.NewPrivatePool(u, c, d.log, d.metrics.Registry, upstream.WithTLSRefresh(cfg.TLS.RefreshInterval),
			upstream.WithEndpointRequests(d.metrics.UpstreamRequests), upstream.WithPushHandler(d.pushSink(u.Name)))
		if err != nil {
			return fmt.Errorf("upstreams[%d]: %w", i, err)
		}
		ps.pools[u.Name] = pool
		ps.newPools = append(ps.newPools, pool)
	}
	// Give new pools a moment to connect before traffic moves to them, so
	// a reload does not fail calls with "no healthy endpoint". An upstream
	// that stays down is not an error (it may come up later).
	if len(ps.newPools) > 0 && d.warmUp > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), d.warmUp)
		defer cancel()
		var wg sync.WaitGroup
		for _, pool := range ps.newPools {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := pool.WaitHealthy(ctx, 1); err != nil {
					d.log.Warn("private upstream not connected yet", "component", "runtime", "upstream", pool.Name(), "err", err)
				}
			}()
		}
		wg.Wait()
	}
	return nil
}

// bridge builds the outbound handler of a new grpc listener.
func (p *privatePools) bridge(d buildDeps, lc config.Listener, st *staged) (grpcBridge, error) {
	b, err := outbound.New(outbound.Options{Logger: d.log, Metrics: d.metrics, Limits: lc.Limits.Effective(), Telemetry: d.tel, Descriptors: d.descs, Migration: d.mig, Switches: d.sw})
	if err != nil {
		return nil, err
	}
	if err := b.Update(lc, st.set()); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return b, nil
}

// prepareUpdate builds the new routes of a kept grpc listener's bridge;
// they are installed by commit (the live bridge is not touched before).
func (p *privatePools) prepareUpdate(l *listener, lc config.Listener, st *staged) error {
	g, ok := l.srv.(*grpcServer)
	if !ok {
		return nil
	}
	commit, err := g.bridge.Prepare(lc, st.set())
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	st.priv.commits = append(st.priv.commits, commit)
	return nil
}

func (p *privatePools) commit(st *staged, retired *retiredSet, drain time.Duration) {
	ps := st.priv
	for _, c := range ps.commits {
		c()
	}
	for name, old := range p.pools {
		if ps.pools[name] == old {
			continue
		}
		retired.retire(old, drain)
	}
	p.pools, p.cfgs = ps.pools, ps.cfgs
}

func (p *privatePools) abort(st *staged) {
	ps := st.priv
	if ps == nil {
		return
	}
	for _, pool := range ps.newPools {
		_ = pool.Close()
	}
}

func (p *privatePools) close() {
	for _, pool := range p.pools {
		_ = pool.Close()
	}
}

// Private returns the named private upstream pool (tests, introspection).
func (r *Runtime) Private(name string) *upstream.PrivatePool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.priv.pools[name]
}
