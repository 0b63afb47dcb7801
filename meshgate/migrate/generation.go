package migrate

import (
	"context"
	"sync"
	"time"

	"github.com/meshgate/meshgate/meshgate/shadow"
)

// Generation collects what one config generation's route tables resolved:
// its routes (for the admin API) and its shadow mirrors (closed when the
// generation is replaced). A reload calls Begin, builds its tables (which
// call Staging and Add/AddMirror), then Commit or Abort.
type Generation struct {
	mu      sync.Mutex
	routes  []Route
	mirrors []*shadow.Mirror
}

// Add records a route of the generation.
func (g *Generation) Add(r Route) {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.routes = append(g.routes, r)
	g.mu.Unlock()
}

// AddMirror records a mirror of the generation.
func (g *Generation) AddMirror(m *shadow.Mirror) {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.mirrors = append(g.mirrors, m)
	g.mu.Unlock()
}

// MirrorCloseTimeout bounds how long a replaced generation's shadow calls
// may run on.
const MirrorCloseTimeout = 10 * time.Second

// Begin starts staging a generation; route tables built until Commit or
// Abort find it with Staging. Calls are serialised by the caller (the
// runtime's reload lock).
func (c *Controller) Begin() *Generation {
	g := &Generation{}
	c.staging.Store(g)
	return g
}

// Staging is the generation being built (nil outside Begin…Commit/Abort).
func (c *Controller) Staging() *Generation {
	if c == nil {
		return nil
	}
	return c.staging.Load()
}

// Commit makes g the generation in service: its routes answer the admin
// API and the previous generation's mirrors close (their queued copies are
// dropped and counted; calls under way end within MirrorCloseTimeout).
func (c *Controller) Commit(g *Generation) {
	c.staging.CompareAndSwap(g, nil)
	g.mu.Lock()
	routes, mirrors := g.routes, g.mirrors
	g.mu.Unlock()
	c.Publish(routes)
	c.mu.Lock()
	old := c.mirrors
	c.mirrors = mirrors
	c.mu.Unlock()
	closeMirrors(old)
}

// Abort discards g (a reload that failed): its mirrors close.
func (c *Controller) Abort(g *Generation) {
	c.staging.CompareAndSwap(g, nil)
	g.mu.Lock()
	mirrors := g.mirrors
	g.mirrors = nil
	g.mu.Unlock()
	closeMirrors(mirrors)
}

// Close closes the mirrors in service (shutdown).
func (c *Controller) Close() {
	c.mu.Lock()
	old := c.mirrors
	c.mirrors = nil
	c.mu.Unlock()
	closeMirrors(old)
}

func closeMirrors(ms []*shadow.Mirror) {
	if len(ms) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), MirrorCloseTimeout)
	defer cancel()
	for _, m := range ms {
		_ = m.Close(ctx)
	}
}
