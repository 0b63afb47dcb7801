package push

import (
	"strconv"
	"sync"

	"github.com/meshgate/meshgate/meshgate/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a push (the outcome label of meshgate_push_total).
const (
	OutcomeOK        = "ok"        // queued on at least one connection / call made
	OutcomeNotFound  = "not_found" // no connection carries the uin
	OutcomeExhausted = "exhausted" // every connection of the uin over its bound
	OutcomeInvalid   = "invalid"   // refused request (uin 0, bad extension, denied)
	OutcomeDropped   = "dropped"   // upstream push dropped: forwarder at its concurrency bound
	OutcomeFailed    = "failed"    // upstream push forwarded by gRPC and the call failed
	maxCmdLabels     = 256         // distinct cmd label values; more count as "other"
	otherCmd         = "other"
)

// Metrics counts pushes: meshgate_push_total{listener,cmd,outcome}. The cmd
// label takes at most 256 distinct values (then "other"), so a caller
// choosing cmds cannot grow the series without bound. A nil *Metrics counts
// nothing.
type Metrics struct {
	vec *prometheus.CounterVec

	mu   sync.RWMutex
	cmds map[uint32]string
}

// NewMetrics registers meshgate_push_total on reg (nil: unregistered). An
// already registered collector is reused, so several owners may share it.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_push_total",
		Help: "Pushes to downstream connections and upstream pushes forwarded, by listener (or upstream:<name>), cmd and outcome.",
	}, []string{"listener", "cmd", "outcome"})
	vec, err := promreg.Adopt(reg, vec)
	if err != nil {
		return nil, err
	}
	return &Metrics{vec: vec, cmds: map[uint32]string{}}, nil
}

func (m *Metrics) cmdLabel(cmd uint32) string {
	m.mu.RLock()
	l, ok := m.cmds[cmd]
	m.mu.RUnlock()
	if ok {
		return l
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok = m.cmds[cmd]; ok {
		return l
	}
	if len(m.cmds) >= maxCmdLabels {
		return otherCmd
	}
	l = strconv.FormatUint(uint64(cmd), 10)
	m.cmds[cmd] = l
	return l
}

// Inc counts one push.
func (m *Metrics) Inc(listener string, cmd uint32, outcome string) {
	if m == nil {
		return
	}
	m.vec.WithLabelValues(listener, m.cmdLabel(cmd), outcome).Inc()
}
