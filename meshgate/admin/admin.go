// Package admin is MeshGate's admin HTTP endpoint: /healthz, /readyz,
// /metrics (Prometheus), /config (effective config, secrets redacted) and
// /debug/pprof. It listens on loopback by default (config.Admin.Address).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrNotReady is returned by readiness checks that fail.
var ErrNotReady = errors.New("admin: not ready")

// Check is a readiness check: nil means ready.
type Check func() error

// Server is the admin HTTP server.
type Server struct {
	metrics *Metrics
	config  func() any
	log     *slog.Logger

	mu     sync.Mutex
	checks map[string]Check

	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

// New returns an admin server exposing m and, on /config, the value config
// returns (marshalled to JSON; the config model keeps secrets out of JSON).
func New(m *Metrics, config func() any, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{metrics: m, config: config, log: log, checks: map[string]Check{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", s.readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("/config", s.configz)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5e9}
	return s
}

// Handler returns the HTTP handler (for tests or mounting elsewhere).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// SetReadiness adds or replaces the named readiness check; a nil check
// removes it. /readyz is 200 only when every check passes.
func (s *Server) SetReadiness(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == nil {
		delete(s.checks, name)
		return
	}
	s.checks[name] = c
}

// Ready runs every readiness check and joins the failures.
func (s *Server) Ready() error {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make([]Check, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i] = s.checks[n]
	}
	s.mu.Unlock()
	var errs []error
	for i, c := range checks {
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := s.Ready(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (s *Server) configz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	var v any
	if s.config != nil {
		v = s.config()
	}
	if err := enc.Encode(v); err != nil {
		s.log.Warn("admin: encoding /config", "err", err)
	}
}

// Listen binds addr and starts serving in the background.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops the server, waiting for active requests up to ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	s.wg.Wait()
	return err
}
