package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/promreg"
)

// configStatus tracks which config is served and how the last (re)load
// went, for /metrics and /config:
//
//	meshgate_config_last_reload_success            1 ok, 0 rejected
//	meshgate_config_last_reload_timestamp_seconds  time of the last load or reload attempt
//	meshgate_config_generation                     1 at start, +1 per applied reload
//	meshgate_config_info{hash}                     1, for the served config's hash
type configStatus struct {
	success, ts, gen prometheus.Gauge
	info             *prometheus.GaugeVec

	mu         sync.Mutex
	generation uint64
	hash       string
	appliedAt  time.Time
	lastAt     time.Time
	lastOK     bool
	lastErr    string
}

func newConfigStatus(reg prometheus.Registerer) *configStatus {
	s := &configStatus{
		success: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "meshgate", Name: "config_last_reload_success",
			Help: "Whether the last configuration load or reload was applied (1) or rejected (0)."})),
		ts: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "meshgate", Name: "config_last_reload_timestamp_seconds",
			Help: "Unix time of the last configuration load or reload attempt."})),
		gen: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "meshgate", Name: "config_generation",
			Help: "Generation of the served configuration: 1 at start, +1 per applied reload."})),
		info: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "meshgate", Name: "config_info",
			Help: "Always 1, labelled with the hash of the served configuration."}, []string{"hash"})),
	}
	return s
}

// register registers c on reg, reusing an identical collector already
// registered (a Metrics shared by two runtimes).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, _ = promreg.Adopt(reg, c) // a conflicting collector: c stays unregistered
	return c
}

// servedHash is the ConfigHash of the served config ("" before the first).
func (s *configStatus) servedHash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hash
}

// applied records that cfg is now served.
func (s *configStatus) applied(cfg *config.Config) {
	h := ConfigHash(cfg)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.generation++
	if s.hash != h {
		s.info.Reset()
		s.info.WithLabelValues(h).Set(1)
	}
	s.hash, s.appliedAt, s.lastAt, s.lastOK, s.lastErr = h, now, now, true, ""
	s.success.Set(1)
	s.ts.Set(float64(now.UnixNano()) / 1e9)
	s.gen.Set(float64(s.generation))
}

// rejected records a rejected reload (the served config is unchanged).
func (s *configStatus) rejected(err error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastAt, s.lastOK, s.lastErr = now, false, err.Error()
	s.success.Set(0)
	s.ts.Set(float64(now.UnixNano()) / 1e9)
}

// statusView is the "status" part of /config.
type statusView struct {
	Generation uint64    `json:"generation"`
	Hash       string    `json:"hash"`
	AppliedAt  time.Time `json:"applied_at"`
	LastReload struct {
		At      time.Time `json:"at"`
		Success bool      `json:"success"`
		Error   string    `json:"error,omitempty"`
	} `json:"last_reload"`
}

func (s *configStatus) view() statusView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := statusView{Generation: s.generation, Hash: s.hash, AppliedAt: s.appliedAt}
	v.LastReload.At, v.LastReload.Success, v.LastReload.Error = s.lastAt, s.lastOK, s.lastErr
	return v
}

// ConfigHash identifies a config's content: 16 hex digits of the SHA-256
// of its /config view (so secrets, which the view omits, are not hashed)
// and its inline codec descriptions.
func ConfigHash(cfg *config.Config) string {
	h := sha256.New()
	b, _ := json.Marshal(cfg.View())
	h.Write(b)
	for i := range cfg.Codecs {
		h.Write([]byte(specText(&cfg.Codecs[i].Spec)))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
