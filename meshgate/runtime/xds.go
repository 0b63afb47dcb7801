package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds"
)

// xdsPlane is the embedded xDS control plane a config's xds section asks
// for: started with the runtime, fed every reloaded config, and checked by
// the "xds" readiness check (a NACKed push or a config it could not
// translate makes /readyz fail until a good push is accepted).
type xdsPlane struct {
	srv    *xds.Server
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	lastErr error // last Update failure, nil after a successful one
}

// XDS returns the embedded control plane, or nil when the config has no
// xds section.
func (r *Runtime) XDS() *xds.Server {
	r.xdsMu.Lock()
	defer r.xdsMu.Unlock()
	if r.xdsPlane == nil {
		return nil
	}
	return r.xdsPlane.srv
}

// syncXDS starts, updates or stops the control plane to match cfg. It is
// called after a config was applied to the data path.
//
// Pushes are serialized by xdsSync; xdsMu (which readiness and XDS take) is
// held only to read or swap the plane pointer, never across a push that
// waits for Envoy's ACKs, so /readyz and /config answer during a slow push.
func (r *Runtime) syncXDS(cfg *config.Config) error {
	r.xdsSync.Lock()
	defer r.xdsSync.Unlock()
	r.xdsMu.Lock()
	p := r.xdsPlane
	r.xdsMu.Unlock()
	m, err := cfg.XDSModel()
	if err != nil {
		// Check builds the model too: a config that got here has none of
		// these errors.
		return err
	}
	switch {
	case m == nil && p == nil:
		return nil
	case m == nil:
		r.stopXDSLocked()
		return nil
	case p != nil && p.srv.TransportChanged(m):
		// A new address or new TLS settings need a new listener: restart
		// (Envoy keeps its config and reconnects).
		r.log.Info("xds transport settings changed; restarting the control plane")
		r.stopXDSLocked()
	case p != nil:
		err := p.srv.Update(m)
		p.mu.Lock()
		p.lastErr = err
		p.mu.Unlock()
		if err != nil {
			r.log.Warn("xds update failed; Envoy keeps the previous snapshot", "err", err)
		}
		return err
	}
	srv := xds.NewServer(xds.Options{Logger: r.opts.Logger, Registerer: r.metrics.Registry})
	if err := srv.Update(m); err != nil {
		return err
	}
	if _, err := srv.Listen(); err != nil {
		srv.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p = &xdsPlane{srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(ctx) }()
	r.xdsMu.Lock()
	r.xdsPlane = p
	r.xdsMu.Unlock()
	r.admin.SetReadiness("xds", r.xdsReady)
	return nil
}

func (r *Runtime) xdsReady() error {
	r.xdsMu.Lock()
	p := r.xdsPlane
	r.xdsMu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	err := p.lastErr
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: xds: last config not pushed: %w", admin.ErrNotReady, err)
	}
	if err := p.srv.NackCheck(); err != nil {
		return fmt.Errorf("%w: %w", admin.ErrNotReady, err)
	}
	return nil
}

// stopXDS stops the control plane (Envoy keeps its last config).
func (r *Runtime) stopXDS() {
	r.xdsSync.Lock()
	defer r.xdsSync.Unlock()
	r.stopXDSLocked()
}

// stopXDSLocked stops the plane; the caller holds xdsSync.
func (r *Runtime) stopXDSLocked() {
	r.xdsMu.Lock()
	p := r.xdsPlane
	r.xdsPlane = nil
	r.xdsMu.Unlock()
	if p == nil {
		return
	}
	p.cancel()
	p.srv.Close()
	select {
	case err := <-p.done:
		if err != nil && !errors.Is(err, xds.ErrClosed) {
			r.log.Warn("xds server stopped", "err", err)
		}
	case <-time.After(5 * time.Second):
		r.log.Warn("xds server did not stop in time")
	}
}
