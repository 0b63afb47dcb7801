package runtime

import (
	"context"
	"sync"

	"github.com/meshgate/meshgate/meshgate/migrate"
)

// migration is the runtime's migration control (docs/migration.md): one
// controller for the process (overrides, per-backend windows and shadow
// logs survive reloads); each apply stages a generation that its route
// tables fill and that is committed or aborted with it.
type migration struct {
	c    *migrate.Controller
	stop context.CancelFunc
	done sync.WaitGroup
}

func (r *Runtime) initMigration() {
	r.mig.c = migrate.New(r.metrics.Registry, r.opts.Logger,
		migrate.WithUnifiedMetrics(r.metrics.RequestGatherer, "meshgate_requests_total", "meshgate_request_duration_seconds"))
}

// startMigration samples the backend counters for /migrate/status.
func (r *Runtime) startMigration() {
	ctx, cancel := context.WithCancel(context.Background())
	r.mig.stop = cancel
	r.mig.done.Add(1)
	go func() {
		defer r.mig.done.Done()
		r.mig.c.Run(ctx)
	}()
}

func (r *Runtime) stopMigration() {
	if r.mig.stop != nil {
		r.mig.stop()
	}
	r.mig.done.Wait()
	r.mig.c.Close()
}

// Migration returns the migration controller (admin API, tests).
func (r *Runtime) Migration() *migrate.Controller { return r.mig.c }
