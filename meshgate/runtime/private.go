package runtime

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// grpcBridge is the gRPC→private side mounted on a grpc listener.
type grpcBridge interface {
	ServerOptions() []grpc.ServerOption
}

// privatePools owns the private-protocol upstream pools (package upstream)
// and builds the gRPC→private bridges (package outbound) of grpc listeners.
//
// A private pool dropped by a reload is closed DrainTimeout later, so calls
// that started on it finish (package upstream pools are not reference
// counted); Close closes such pools at once.
type privatePools struct {
	pools map[string]*upstream.PrivatePool
	cfgs  map[string]config.Upstream

	mu      sync.Mutex
	retired map[*upstream.PrivatePool]*time.Timer
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
	p.retired = map[*upstream.PrivatePool]*time.Timer{}
}

func (p *privatePools) stage(r *Runtime, cfg *config.Config, st *staged) error {
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
		pool, err := upstream.NewPrivatePool(u, c, r.opts.Logger, r.metrics.Registry, upstream.WithTLSRefresh(cfg.TLS.RefreshInterval),
			upstream.WithPushHandler(r.pushSink(u.Name).handle))
		if err != nil {
			return fmt.Errorf("upstreams[%d]: %w", i, err)
		}
		ps.pools[u.Name] = pool
		ps.newPools = append(ps.newPools, pool)
	}
	// Give new pools a moment to connect before traffic moves to them, so
	// a reload does not fail calls with "no healthy endpoint". An upstream
	// that stays down is not an error (it may come up later).
	if len(ps.newPools) > 0 && r.opts.WarmUp > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.WarmUp)
		defer cancel()
		var wg sync.WaitGroup
		for _, pool := range ps.newPools {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := pool.WaitHealthy(ctx, 1); err != nil {
					r.log.Warn("private upstream not connected yet", "upstream", pool.Name(), "err", err)
				}
			}()
		}
		wg.Wait()
	}
	return nil
}

// bridge builds the outbound handler of a new grpc listener.
func (p *privatePools) bridge(r *Runtime, lc config.Listener, cfg *config.Config, st *staged) (grpcBridge, error) {
	ps := st.priv.(*privStaged)
	b, err := outbound.New(outbound.Options{Logger: r.opts.Logger, Registerer: r.metrics.Registry, DefaultTimeout: cfg.Defaults.Timeout, Limits: lc.Limits.Effective()})
	if err != nil {
		return nil, err
	}
	if err := b.Update(lc, ps.pools); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return b, nil
}

// prepareUpdate builds the new routes of a kept grpc listener's bridge;
// they are installed by commit (the live bridge is not touched before).
func (p *privatePools) prepareUpdate(l *listener, lc config.Listener, st *staged) error {
	ps := st.priv.(*privStaged)
	g, ok := l.srv.(*grpcServer)
	if !ok {
		return nil
	}
	b, ok := g.bridge.(*outbound.Server)
	if !ok {
		return nil
	}
	commit, err := b.Prepare(lc, ps.pools)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	ps.commits = append(ps.commits, commit)
	return nil
}

func (p *privatePools) commit(r *Runtime, st *staged, drain time.Duration) {
	ps := st.priv.(*privStaged)
	for _, c := range ps.commits {
		c()
	}
	for name, old := range p.pools {
		if ps.pools[name] == old {
			continue
		}
		p.mu.Lock()
		p.retired[old] = time.AfterFunc(drain, func() {
			p.mu.Lock()
			_, still := p.retired[old]
			delete(p.retired, old)
			p.mu.Unlock()
			if still {
				_ = old.Close()
			}
		})
		p.mu.Unlock()
	}
	p.pools, p.cfgs = ps.pools, ps.cfgs
}

func (p *privatePools) abort(st *staged) {
	ps, ok := st.priv.(*privStaged)
	if !ok {
		return
	}
	for _, pool := range ps.newPools {
		_ = pool.Close()
	}
}

func (p *privatePools) close() {
	p.mu.Lock()
	retired := p.retired
	p.retired = map[*upstream.PrivatePool]*time.Timer{}
	p.mu.Unlock()
	for pool, t := range retired {
		t.Stop()
		_ = pool.Close()
	}
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
