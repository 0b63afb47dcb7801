package runtime

import (
	"fmt"
	"slices"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// HealthInterval is how often upstream health is re-read into readiness
// and the gRPC listeners' health services.
const HealthInterval = 100 * time.Millisecond

// upstreamsReady is the "upstreams" readiness check: with readiness "all"
// (default) every upstream needs a ready connection (a grpc upstream: every
// shared ClientConn READY; a private one: a healthy endpoint), with "any"
// one of them, with "none" nothing.
//
// It reads the snapshot taken at each commit, never Runtime.mu, so /readyz
// answers at once even while a reload holds the lock warming up pools.
func (r *Runtime) upstreamsReady() error {
	cfg := r.cfg.Load()
	ups := r.upstreams.Load()
	if cfg == nil || ups == nil || cfg.Readiness == config.ReadinessNone {
		return nil
	}
	var down []string
	total := len(ups.grpc) + len(ups.priv)
	for name, p := range ups.grpc {
		if !p.Ready() {
			down = append(down, name)
		}
	}
	for name, p := range ups.priv {
		if p.Stats().Healthy == 0 {
			down = append(down, name)
		}
	}
	if len(down) == 0 || (cfg.Readiness == config.ReadinessAny && len(down) < total) {
		return nil
	}
	slices.Sort(down)
	return fmt.Errorf("%w: upstreams not connected: %s", admin.ErrNotReady, strings.Join(down, ", "))
}

// upstreamSet is the committed upstream pools, for lock-free readiness.
type upstreamSet struct {
	grpc map[string]*grpcpool.Pool
	priv map[string]*upstream.PrivatePool
}

// snapshotUpstreams publishes the committed pools (called with r.mu held;
// the maps are replaced, never mutated, by later commits).
func (r *Runtime) snapshotUpstreams() {
	r.upstreams.Store(&upstreamSet{grpc: r.pools, priv: r.priv.pools})
}

// startHealth runs the loop that keeps every gRPC listener's
// grpc.health.v1 service in step with its upstreams: each service routed
// by the listener ("pkg.Svc" of "/pkg.Svc/Method" or "/pkg.Svc/*") is
// SERVING while every upstream it routes to is up (a private one has a
// healthy endpoint, a gRPC one is connected), NOT_SERVING otherwise and, once draining starts, NOT_SERVING for good
// (health.Server.Shutdown). The overall service "" stays SERVING until then.
func (r *Runtime) startHealth() {
	r.healthStop, r.healthDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.healthDone)
		t := time.NewTicker(HealthInterval)
		defer t.Stop()
		for {
			r.updateHealth()
			select {
			case <-r.healthStop:
				return
			case <-t.C:
			}
		}
	}()
}

func (r *Runtime) stopHealth() {
	r.healthOnce.Do(func() {
		if r.healthStop != nil {
			close(r.healthStop)
			<-r.healthDone
		}
	})
}

func (r *Runtime) updateHealth() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for _, l := range r.listeners {
		g, ok := l.srv.(*grpcServer)
		if !ok {
			continue
		}
		up := map[string]bool{} // service → all its upstreams healthy
		for _, rt := range l.cfg.Routes {
			svc := serviceOf(rt.Method)
			if svc == "" {
				continue
			}
			ok, seen := up[svc]
			healthy := false
			if p := r.priv.pools[rt.Upstream]; p != nil {
				healthy = p.Stats().Healthy > 0
			} else if g := r.pools[rt.Upstream]; g != nil { // gRPC → gRPC route
				healthy = g.Ready()
			}
			up[svc] = healthy && (ok || !seen)
		}
		for svc := range g.healthSvcs {
			if _, still := up[svc]; !still {
				g.health.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
				delete(g.healthSvcs, svc)
			}
		}
		if g.healthSvcs == nil {
			g.healthSvcs = map[string]bool{}
		}
		for svc, ok := range up {
			if was, set := g.healthSvcs[svc]; set && was == ok {
				continue
			}
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			g.health.SetServingStatus(svc, st)
			g.healthSvcs[svc] = ok
		}
	}
}

// serviceOf returns "pkg.Svc" of "/pkg.Svc/Method".
func serviceOf(method string) string {
	m := strings.TrimPrefix(method, "/")
	svc, _, ok := strings.Cut(m, "/")
	if !ok {
		return ""
	}
	return svc
}
