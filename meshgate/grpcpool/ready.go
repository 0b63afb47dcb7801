package grpcpool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"

	"github.com/meshgate/meshgate/meshgate/config"
)

// BackoffBase is the first reconnect delay of a gRPC upstream connection.
const BackoffBase = 500 * time.Millisecond

// connectParams bounds the reconnect backoff by u.ReconnectBackoffMax
// (default config.DefaultReconnectBackoffMax), starting at BackoffBase,
// with grpc-go's default multiplier (1.6) and jitter (±20%).
func connectParams(u config.Upstream) grpc.ConnectParams {
	maxDelay := u.ReconnectBackoffMax
	if maxDelay <= 0 {
		maxDelay = config.DefaultReconnectBackoffMax
	}
	bc := backoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = min(BackoffBase, maxDelay), maxDelay
	return grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 5 * time.Second}
}

// readiness tracks the connectivity state of a Pool's ClientConns.
type readiness struct {
	ready   []atomic.Bool // per ClientConn: READY, or IDLE after being READY
	watchWG sync.WaitGroup
}

// watchStates starts one state watcher per ClientConn; they end when the
// pool closes.
func (p *Pool) watchStates() {
	p.ready = make([]atomic.Bool, len(p.conns))
	for i, cc := range p.conns {
		p.watchWG.Add(1)
		go p.watch(i, cc)
	}
}

// watch tracks ClientConn i's connectivity state until the pool closes.
func (p *Pool) watch(i int, cc *grpc.ClientConn) {
	defer p.watchWG.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	was := false
	for s := cc.GetState(); ; s = cc.GetState() {
		switch s {
		case connectivity.Ready:
			was = true
		case connectivity.Idle:
			// idle after being ready reconnects on the next call; an
			// xds:/// channel's balancer may connect only on the first
			// call (ring_hash), so its IDLE — resolved, not failing —
			// counts as ready.
			if p.lazy {
				was = true
			}
		default:
			was = false
		}
		p.ready[i].Store(was)
		if s == connectivity.Shutdown || !cc.WaitForStateChange(ctx, s) {
			p.ready[i].Store(false)
			return
		}
	}
}

// Ready reports whether every ClientConn has a ready connection (IDLE after
// READY counts: it reconnects on the next call).
func (p *Pool) Ready() bool {
	if p.direct != nil {
		return p.directReady()
	}
	for i := range p.ready {
		if !p.ready[i].Load() {
			return false
		}
	}
	return len(p.ready) > 0
}

// WaitReady blocks until Ready or ctx ends.
func (p *Pool) WaitReady(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !p.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("upstream %s: not connected: %w", p.cfg.Name, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
