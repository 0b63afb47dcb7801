// Package override holds operator overrides of traffic splits: "send every
// request of route R to backend B" (a rollback, or a forced cut-over), set
// and cleared at run time through the admin API (`meshgate migrate
// rollback|clear`) without editing the config.
//
// A Store lives for the whole process, not for one config generation, so an
// override survives every reload until it is cleared; with a state file it
// also survives a restart. Each route has one Pin, resolved once when a
// route table is built; the data path reads it with one atomic load.
package override

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrState wraps state file failures.
var ErrState = errors.New("override: state file")

// Pin is one route's override: the backend every request goes to, or none.
type Pin struct {
	p atomic.Pointer[string]
}

// Backend returns the pinned backend and true, or "" and false. Safe for
// concurrent use; allocation-free.
func (p *Pin) Backend() (string, bool) {
	if p == nil {
		return "", false
	}
	b := p.p.Load()
	if b == nil {
		return "", false
	}
	return *b, true
}

// Entry is one active override.
type Entry struct {
	Route   string    `json:"route"`
	Backend string    `json:"backend"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
}

// Store holds every route's pin.
type Store struct {
	mu      sync.Mutex
	pins    map[string]*Pin
	entries map[string]Entry
	file    string
	gauge   *prometheus.GaugeVec
	now     func() time.Time
}

// New returns an empty store. reg, when non-nil, gets the gauge
// meshgate_migrate_override{route,backend} (1 while an override is set).
func New(reg prometheus.Registerer) *Store {
	s := &Store{pins: map[string]*Pin{}, entries: map[string]Entry{}, now: time.Now}
	s.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshgate", Subsystem: "migrate", Name: "override",
		Help: "1 while an operator override sends every request of route to backend.",
	}, []string{"route", "backend"})
	if reg != nil {
		reg.MustRegister(s.gauge)
	}
	return s
}

// Pin returns route's pin, creating it (unset) on first use. Route tables
// call it once per route when they are built.
func (s *Store) Pin(route string) *Pin {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinLocked(route)
}

func (s *Store) pinLocked(route string) *Pin {
	p := s.pins[route]
	if p == nil {
		p = &Pin{}
		s.pins[route] = p
	}
	return p
}

// Set pins route to backend (the caller has checked both exist) and
// persists the state when a state file is configured. On a persistence
// error the override is still in force and the error is returned.
func (s *Store) Set(route, backend, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.entries[route]; ok {
		s.gauge.DeleteLabelValues(route, old.Backend)
	}
	b := backend
	s.pinLocked(route).p.Store(&b)
	s.entries[route] = Entry{Route: route, Backend: backend, Since: s.now().UTC(), Reason: reason}
	s.gauge.WithLabelValues(route, backend).Set(1)
	return s.saveLocked()
}

// Clear removes route's override; it reports whether one was set.
func (s *Store) Clear(route string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.entries[route]
	if !ok {
		return false, nil
	}
	s.gauge.DeleteLabelValues(route, old.Backend)
	delete(s.entries, route)
	s.pinLocked(route).p.Store(nil)
	return true, s.saveLocked()
}

// Get returns route's override.
func (s *Store) Get(route string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[route]
	return e, ok
}

// List returns every override, sorted by route.
func (s *Store) List() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Route < out[j].Route })
	return out
}

type stateFile struct {
	Overrides []Entry `json:"overrides"`
}

// UseFile sets the state file (""= none). When the file exists its
// overrides are loaded and replace the store's; when it does not, the
// current overrides are written to it. Call at start and on reload.
func (s *Store) UseFile(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if path == s.file {
		return nil
	}
	s.file = path
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s.saveLocked()
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrState, path, err)
	}
	for r, e := range s.entries {
		s.gauge.DeleteLabelValues(r, e.Backend)
		s.pinLocked(r).p.Store(nil)
	}
	clear(s.entries)
	for _, e := range st.Overrides {
		if e.Route == "" || e.Backend == "" {
			continue
		}
		b := e.Backend
		s.pinLocked(e.Route).p.Store(&b)
		s.entries[e.Route] = e
		s.gauge.WithLabelValues(e.Route, e.Backend).Set(1)
	}
	return nil
}

// saveLocked writes the state file atomically (temp file + rename).
func (s *Store) saveLocked() error {
	if s.file == "" {
		return nil
	}
	st := stateFile{Overrides: make([]Entry, 0, len(s.entries))}
	for _, e := range s.entries {
		st.Overrides = append(st.Overrides, e)
	}
	sort.Slice(st.Overrides, func(i, j int) bool { return st.Overrides[i].Route < st.Overrides[j].Route })
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.file), ".meshgate-state-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := os.Rename(tmp.Name(), s.file); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
}
