package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/inbound"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// listener is one running listener.
type listener struct {
	cfg    config.Listener
	ln     net.Listener
	in     *inbound.Server // kind private
	gs     *grpc.Server    // kind grpc
	health *health.Server
	bridge grpcBridge // kind grpc: the gRPC→private handler
	refl   *descset.Reflector
	done   chan struct{}
}

func (l *listener) sameSocket(lc *config.Listener) bool {
	return sameListenerSocket(&l.cfg, lc)
}

// newListener binds the socket and builds the server, not yet serving.
func (r *Runtime) newListener(lc config.Listener, cfg *config.Config, cd codec.Codec, tbl *inbound.Table, st *staged, cur *listener) (*listener, error) {
	if cur != nil && cur.cfg.Address == lc.Address {
		// Same address, new socket settings: the old one must let go of
		// the port first (its connections keep draining).
		cur.stopAccepting()
	}
	var tcfg *tls.Config
	if lc.TLS != nil {
		var err error
		if tcfg, err = ServerTLS(lc.TLS); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	ln, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: address: %v", config.ErrInvalid, err)
	}
	l := &listener{cfg: lc, ln: ln, done: make(chan struct{})}
	switch lc.Kind {
	case config.KindPrivate:
		if tcfg != nil {
			l.ln = tls.NewListener(ln, tcfg)
		}
		l.in = inbound.New(inbound.Options{Name: lc.Name, Codec: cd, Logger: r.opts.Logger, Metrics: r.metrics, DrainQuiet: r.opts.DrainQuiet, Telemetry: &r.tel}, tbl)
	case config.KindGRPC:
		b, err := r.priv.bridge(r, lc, cfg, st)
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		l.bridge = b
		opts := []grpc.ServerOption{grpc.ForceServerCodecV2(rawcodec.Codec{})}
		if tcfg != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tcfg)))
		}
		opts = append(opts, b.ServerOptions()...)
		opts = append(opts, r.gm.ServerOptions()...)
		opts = append(opts, listenerMsgOptions(&lc)...)
		l.gs = grpc.NewServer(opts...)
		l.health = health.NewServer()
		healthpb.RegisterHealthServer(l.gs, l.health)
		l.refl = descset.NewReflector(l.gs) // reflection v1 + v1alpha with the config's descriptor sets
	}
	return l, nil
}

// update applies a new config to a listener that keeps its socket (a grpc
// listener's bridge was already updated by prepareUpdate).
func (l *listener) update(lc config.Listener, tbl *inbound.Table) {
	l.cfg = lc
	if l.in != nil {
		l.in.SetTable(tbl)
	}
}

func (r *Runtime) startListener(l *listener) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(l.done)
		var err error
		switch {
		case l.in != nil:
			err = l.in.Serve(l.ln)
		case l.gs != nil:
			err = l.gs.Serve(l.ln)
			if errors.Is(err, grpc.ErrServerStopped) {
				err = nil
			}
		}
		if err != nil && !errors.Is(err, inbound.ErrClosed) {
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
		_ = l.shutdown(ctx)
		r.log.Info("listener removed", "listener", l.cfg.Name)
	}()
}

func (l *listener) stopAccepting() {
	_ = l.ln.Close()
}

// shutdown drains the listener within ctx, then closes it hard.
func (l *listener) shutdown(ctx context.Context) error {
	switch {
	case l.in != nil:
		return l.in.Shutdown(ctx)
	case l.gs != nil:
		if l.health != nil {
			l.health.Shutdown()
		}
		done := make(chan struct{})
		go func() { l.gs.GracefulStop(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			l.gs.Stop()
			<-done
			return ctx.Err()
		}
	}
	return nil
}

// abort closes the listener at once.
func (l *listener) abort() {
	switch {
	case l.in != nil:
		l.in.Close()
		_ = l.ln.Close()
	case l.gs != nil:
		l.gs.Stop()
		_ = l.ln.Close()
	}
}

// ServerTLS builds a listener tls.Config from t (see grpcpool.ServerTLS:
// the key pair is re-read when its files change).
func ServerTLS(t *config.TLS) (*tls.Config, error) { return grpcpool.ServerTLS(t) }
