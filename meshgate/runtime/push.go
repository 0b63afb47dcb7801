package runtime

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/inbound"
	"github.com/meshgate/meshgate/meshgate/push"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// pushHub is the process's push delivery (docs/push-streams.md): every
// running private listener, each with its uin → connection registry when
// it has a push section. The push API of every grpc listener with
// push.api delivers through it; so do upstreams with push.to downstream.
type pushHub struct {
	mu   sync.RWMutex
	srvs map[*inbound.Server]struct{}

	mOnce sync.Once
	m     *push.Metrics
	mErr  error

	sinks map[string]*pushSink // by private upstream name (Runtime.mu)
}

func (h *pushHub) add(s *inbound.Server) {
	h.mu.Lock()
	if h.srvs == nil {
		h.srvs = map[*inbound.Server]struct{}{}
	}
	h.srvs[s] = struct{}{}
	h.mu.Unlock()
}

func (h *pushHub) remove(s *inbound.Server) {
	h.mu.Lock()
	delete(h.srvs, s)
	h.mu.Unlock()
}

// Deliver pushes f to uin's connections on every private listener: the
// sum of the deliveries; with none, push.ErrFull when a connection refused
// for its bound, else push.ErrNotConnected.
func (h *pushHub) Deliver(uin uint64, f *codec.Frame) (int, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return push.DeliverAll(func(yield func(push.Deliverer) bool) {
		for s := range h.srvs {
			if reg := s.Registry(); reg != nil && !yield(reg) {
				return
			}
		}
	}, uin, f)
}

// metrics returns meshgate_push_total, registered once.
func (r *Runtime) pushMetrics() (*push.Metrics, error) {
	h := &r.push
	h.mOnce.Do(func() { h.m, h.mErr = push.NewMetrics(r.metrics.Registry) })
	return h.m, h.mErr
}

// pushPolicy is a grpc listener's authz policy for the push API (nil
// allows every caller, like the listener's routes).
type pushPolicy struct {
	p   *authz.Policy
	off bool // push.api was turned off by a reload: the methods are UNIMPLEMENTED
}

// registerPushAPI serves meshgate.v1.Push on g when lc.push.api is set. A
// reload that keeps the listener's socket applies a changed authz policy
// and can turn the API off; turning it on takes a new listener (an address
// change) or a restart, since a gRPC server's services are fixed once it
// serves.
func (r *Runtime) registerPushAPI(g *grpcServer, lc config.Listener) error {
	if lc.Push == nil || !lc.Push.API {
		return nil
	}
	m, err := r.pushMetrics()
	if err != nil {
		return err
	}
	g.setPushPolicy(lc)
	push.NewService(lc.Name, &r.push, m, g.authorizePush).Register(g.gs)
	return nil
}

func (g *grpcServer) setPushPolicy(lc config.Listener) {
	if g.pushAuthz == nil {
		g.pushAuthz = new(atomic.Pointer[pushPolicy])
	}
	pp := &pushPolicy{off: lc.Push == nil || !lc.Push.API}
	if lc.Authz != nil {
		pp.p = authz.New(lc.Authz)
	}
	g.pushAuthz.Store(pp)
}

// authorizePush applies the listener's authz policy to a push API call:
// the verified client certificate must hold an identity allowed method.
func (g *grpcServer) authorizePush(ctx context.Context, method string) error {
	pp := g.pushAuthz.Load()
	if pp.off {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	if pp.p == nil {
		return nil
	}
	cert, err := authz.PeerCert(ctx)
	if err != nil {
		return status.Error(codes.PermissionDenied, "push: permission denied: no verified client certificate")
	}
	if !pp.p.AllowCert(cert, method) {
		return status.Errorf(codes.PermissionDenied, "push: permission denied for %s", method)
	}
	return nil
}

// pushSink is where a private upstream's PUSH frames go: one per upstream
// name, kept across reloads (pools keep their handler), pointing at the
// forwarder of the committed config (nil: dropped).
type pushSink struct {
	fw atomic.Pointer[push.Forwarder]
}

func (s *pushSink) handle(f *codec.Frame) {
	if fw := s.fw.Load(); fw != nil {
		fw.Handle(f)
	}
}

// pushSink returns name's sink (r.mu held).
func (r *Runtime) pushSink(name string) *pushSink {
	h := &r.push
	if h.sinks == nil {
		h.sinks = map[string]*pushSink{}
	}
	s := h.sinks[name]
	if s == nil {
		s = &pushSink{}
		h.sinks[name] = s
	}
	return s
}

// commitPush points every private upstream's sink at the forwarder its
// committed upstreams[].push describes (r.mu held, after r.pools is set).
func (r *Runtime) commitPush(cfg *config.Config) {
	seen := map[string]bool{}
	for _, u := range cfg.Upstreams {
		if u.Protocol != config.ProtoPrivate {
			continue
		}
		seen[u.Name] = true
		s := r.pushSink(u.Name)
		if u.Push == nil {
			s.fw.Store(nil)
			continue
		}
		m, err := r.pushMetrics()
		if err != nil {
			r.log.Error("push metrics", "err", err)
		}
		switch u.Push.To {
		case config.PushToDownstream:
			s.fw.Store(push.ToDownstream(u.Name, &r.push, m))
		case config.PushToGRPC:
			pool := r.pools[u.Push.Upstream]
			if pool == nil {
				s.fw.Store(nil)
				continue
			}
			s.fw.Store(push.ToGRPC(u.Name, pool, u.Push.Method, u.Push.Timeout, u.Push.MaxConcurrency, m, r.log,
				grpc.ForceCodecV2(rawcodec.Codec{})))
		}
	}
	for name, s := range r.push.sinks {
		if !seen[name] {
			s.fw.Store(nil)
			delete(r.push.sinks, name)
		}
	}
}
