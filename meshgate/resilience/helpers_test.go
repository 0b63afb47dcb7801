package resilience

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/meshgate/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// manual is a clock tests advance by hand.
type manual struct{ t atomic.Int64 }

func (m *manual) now() time.Duration  { return time.Duration(m.t.Load()) }
func (m *manual) add(d time.Duration) { m.t.Add(int64(d)) }
func newManual() *manual              { m := &manual{}; m.t.Store(int64(time.Hour)); return m }
func (m *manual) opt() Option         { return WithClock(m.now) }
func addrs(n int) []string {
	return []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1", "10.0.0.5:1"}[:n]
}
func defaults() config.Resilience          { var r config.Resilience; r.ApplyDefaults(); return r }
func pol(r config.RouteResilience) *Policy { p := PolicyFor(r); return &p }
