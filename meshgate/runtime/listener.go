package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/connlimit"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/grpcserve"
	"github.com/meshgate/meshgate/meshgate/inbound"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// server is what a listener runs on its socket: privateServer (kind
// private: package inbound) or grpcServer (kind grpc: grpc.Server with the
// outbound bridge and the health service). A reload builds servers that do
// not serve yet; its commit Starts the new ones, Updates the kept ones and
// Shuts down the replaced ones; an abort Aborts what it built.
type server interface {
	// Start serves ln until Shutdown or Abort (it blocks).
	Start(ln net.Listener) error
	// Update applies a kept listener's new config (routes, limits).
	Update(lc config.Listener, tbl *inbound.Table)
	// Shutdown drains within ctx, after keeping on accepting for grace
	// where the server supports it, then closes hard.
	Shutdown(ctx context.Context, grace time.Duration) error
	// Abort closes at once.
	Abort()
}

// listener is one running listener: a server on a view of a socket.
type listener struct {
	cfg  config.Listener
	ln   net.Listener // a view of sock (TLS-wrapped on TLS private listeners)
	sock *socket
	srv  server
	tls  *tlsconf.Server // nil: plaintext
	done chan struct{}
}

func (l *listener) sameSocket(lc *config.Listener) bool {
	return sameListenerSocket(&l.cfg, lc)
}

// newListener builds the server, not yet serving, on a new view of the live
// socket when a running listener already holds lc.Address, else on a newly
// bound socket. Nothing running is touched: closing the new listener
// (abort) releases only what it took.
func (r *Runtime) newListener(lc config.Listener, cfg *config.Config, cd codec.Codec, tbl *inbound.Table, st *staged, cur *listener) (*listener, error) {
	var ts *tlsconf.Server
	if lc.TLS != nil {
		var err error
		if ts, err = tlsconf.NewServer(cfg.ResolveTLS(lc.TLS), tlsconf.Options{Refresh: cfg.TLS.RefreshInterval}); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	sock := r.liveSocket(lc.Address, cur)
	if sock == nil {
		var err error
		if sock, err = bindSocket(lc.Address); err != nil {
			if ts != nil {
				ts.Close()
			}
			return nil, fmt.Errorf("%w: address: %v", config.ErrInvalid, err)
		}
	}
	ln := sock.view()
	l := &listener{cfg: lc, ln: ln, sock: sock, tls: ts, done: make(chan struct{})}
	switch lc.Kind {
	case config.KindPrivate:
		if ts != nil {
			l.ln = tls.NewListener(ln, ts.Config())
		}
		lim := lc.Limits.Effective()
		l.srv = &privateServer{inbound.New(inbound.Options{Name: lc.Name, Codec: cd, Logger: r.opts.Logger, Metrics: r.metrics, DrainQuiet: r.opts.DrainQuiet,
			MaxConnections: lim.MaxConnections, FDReserve: cfg.Defaults.Limits.FDReserve, SendTimeout: lim.SendTimeout, Replay: r.replayCache(), Telemetry: &r.tel}, tbl)}
	case config.KindGRPC:
		b, err := r.priv.bridge(r.buildDeps(), lc, st)
		if err != nil {
			_ = ln.Close()
			l.closeTLS()
			return nil, err
		}
		if err := r.limitGRPCListener(l, lc); err != nil {
			_ = ln.Close()
			l.closeTLS()
			return nil, err
		}
		opts := []grpc.ServerOption{grpc.ForceServerCodecV2(rawcodec.Codec{})}
		if ts != nil {
			opts = append(opts, grpc.Creds(ts.Credentials()))
		}
		opts = append(opts, b.ServerOptions()...)
		opts = append(opts, r.gm.ServerOptions()...)
		opts = append(opts, listenerMsgOptions(&lc)...)
		opts = append(opts, listenerTransportOptions()...)
		g := &grpcServer{gs: grpc.NewServer(opts...), health: health.NewServer(), bridge: b}
		healthpb.RegisterHealthServer(g.gs, g.health)
		if err := r.registerPushAPI(g, lc); err != nil {
			_ = ln.Close()
			l.closeTLS()
			return nil, err
		}
		g.refl = descset.NewReflector(g.gs) // reflection v1 + v1alpha with the config's descriptor sets
		if lc.DirectServer() {              // grpc_transport direct: served by grpcserve, delegating to gs (grpcserve.go)
			if g.direct, err = r.directServer(&lc, ts, g); err != nil {
				_ = ln.Close()
				l.closeTLS()
				return nil, err
			}
		}
		l.srv = g
	default:
		_ = ln.Close()
		l.closeTLS()
		return nil, fmt.Errorf("%w: kind: %q", config.ErrInvalid, lc.Kind)
	}
	if ps, ok := l.srv.(*privateServer); ok {
		ps.in.SetPush(lc.Push)
	}
	return l, nil
}

// limitGRPCListener applies limits.max_connections and send_timeout to a
// grpc listener's socket (the rest of its limits are server options).
func (r *Runtime) limitGRPCListener(l *listener, lc config.Listener) error {
	lim := lc.Limits.Effective()
	rej, err := connlimit.NewRejected(r.metrics.Registry)
	if err != nil {
		return err
	}
	l.ln = connlimit.Listener(l.ln, connlimit.Options{Name: lc.Name, Max: lim.MaxConnections,
		WriteTimeout: lim.SendTimeout, Rejected: rej, Logger: r.opts.Logger})
	return nil
}

// update applies a new config to a listener that keeps its socket (a grpc
// listener's bridge routes were prepared by prepareUpdate and are installed
// by the private-side commit).
func (l *listener) update(lc config.Listener, tbl *inbound.Table) {
	l.cfg = lc
	l.srv.Update(lc, tbl)
}

func (l *listener) shutdown(ctx context.Context, grace time.Duration) error {
	defer l.closeTLS()
	return l.srv.Shutdown(ctx, grace)
}

// abort closes the listener and its view of the socket at once.
func (l *listener) abort() {
	defer l.closeTLS()
	l.srv.Abort()
	_ = l.ln.Close()
}

// closeTLS stops re-reading the listener's certificate files.
func (l *listener) closeTLS() {
	if l.tls != nil {
		l.tls.Close()
	}
}

func (r *Runtime) startListener(l *listener) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(l.done)
		if ps, ok := l.srv.(*privateServer); ok {
			r.push.add(ps.in) // pushes reach its connections while it serves
			defer r.push.remove(ps.in)
		}
		if err := l.srv.Start(l.ln); err != nil {
			r.log.Error("listener stopped", "listener", l.cfg.Name, "err", err)
		}
	}()
	r.log.Info("listening", "listener", l.cfg.Name, "kind", l.cfg.Kind, "address", l.ln.Addr().String())
}

// stopListener drains a listener removed by a reload, in the background.
func (r *Runtime) stopListener(l *listener, timeout time.Duration) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = l.shutdown(ctx, 0)
		r.log.Info("listener removed", "listener", l.cfg.Name)
	}()
}

// liveSocket returns the socket a running listener holds on addr (cur's,
// or for a fixed port any listener's), or nil. A fixed addr also matches
// the address cur (configured with port 0) was bound to, so a reload may
// pin a listener where it is.
func (r *Runtime) liveSocket(addr string, cur *listener) *socket {
	if cur != nil && cur.cfg.Address == addr {
		return cur.sock
	}
	if strings.HasSuffix(addr, ":0") {
		return nil
	}
	if cur != nil && cur.sock.raw.Addr().String() == addr {
		return cur.sock
	}
	for _, l := range r.listeners {
		if l.cfg.Address == addr {
			return l.sock
		}
	}
	return nil
}

// privateServer is a kind private listener's server.
type privateServer struct{ in *inbound.Server }

func (p *privateServer) Start(ln net.Listener) error {
	if err := p.in.Serve(ln); err != nil && !errors.Is(err, inbound.ErrClosed) {
		return err
	}
	return nil
}

func (p *privateServer) Update(lc config.Listener, tbl *inbound.Table) {
	p.in.SetTable(tbl)
	p.in.SetPush(lc.Push)
}

// Shutdown stops accepting at once (grace is for gRPC clients, which
// cannot be told to leave before they connect) and drains.
func (p *privateServer) Shutdown(ctx context.Context, _ time.Duration) error {
	return p.in.Shutdown(ctx)
}

func (p *privateServer) Abort() { p.in.Close() }

// grpcServer is a kind grpc listener's server.
type grpcServer struct {
	gs     *grpc.Server
	health *health.Server
	bridge grpcBridge // the gRPC→private handler
	refl   *descset.Reflector
	// healthSvcs: the services last set on health, true = SERVING
	// (guarded by Runtime.mu; see health.go).
	healthSvcs map[string]bool
	// pushAuthz: the push API's policy when push.api is set (push.go).
	pushAuthz *atomic.Pointer[pushPolicy]
	direct    *grpcserve.Server // grpc_transport direct: serves, delegating what its fast path does not serve to gs
}

func (g *grpcServer) Start(ln net.Listener) error {
	if g.direct != nil {
		if err := g.direct.Serve(ln); err != nil && !errors.Is(err, grpcserve.ErrServerClosed) {
			return err
		}
		return nil
	}
	if err := g.gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Update: the bridge's routes are installed by the private-side commit;
// the push API's policy follows the listener's authz.
func (g *grpcServer) Update(lc config.Listener, _ *inbound.Table) {
	if g.pushAuthz != nil {
		g.setPushPolicy(lc)
	}
}

// Shutdown turns the health service NOT_SERVING, keeps accepting and
// serving for grace, so clients that have not yet learnt the endpoint is
// leaving connect and are served instead of refused; then sends GOAWAY,
// stops accepting and waits for the calls in flight (bounded by ctx).
func (g *grpcServer) Shutdown(ctx context.Context, grace time.Duration) error {
	g.health.Shutdown()
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if g.direct != nil {
		err := g.direct.Shutdown(ctx) // delegated streams are served by gs until they end
		g.gs.Stop()
		return err
	}
	return connio.Drain(ctx, g.gs.GracefulStop, g.gs.Stop)
}

func (g *grpcServer) Abort() {
	g.gs.Stop()
	if g.direct != nil {
		g.direct.Close()
	}
}
