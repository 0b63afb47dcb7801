// Package admin is MeshGate's admin HTTP endpoint: /healthz, /readyz,
// /metrics (Prometheus), /config (effective config, secrets redacted) and,
// only when enabled (WithPprof), /debug/pprof. It listens on loopback by
// default (config.Admin.Address).
//
// A second, optional health listener (ListenHealth, config
// admin.health_address) serves exactly /healthz, /readyz and /metrics, for
// kubelet probes and Prometheus scrapes from outside the pod, so that the
// admin address with /config and pprof can stay on loopback.
//
// The admin listener refuses cross-origin browser mutations, Host names
// other than IP literals and localhost while it is bound to loopback (DNS
// rebinding), bodies slower than BodyTimeout, and mutations from
// non-loopback peers without the migrate.token bearer token (guard.go).
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
	"strings"
	"sync"
	"time"

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

	pprof bool
	extra []extraHandler
	// loopbackOnly: the admin listener is bound to loopback, so the Host
	// header must be literal (guard.go); set by Listen before serving.
	loopbackOnly bool

	migrate Migration // migrate.go; nil = no /migrate endpoints

	srv *http.Server
	ln  net.Listener

	health   *http.Server
	healthLn net.Listener

	wg sync.WaitGroup
}

// Option configures a Server.
type Option func(*Server)

// WithPprof serves /debug/pprof/ on the admin listener when on (default
// off: profiles expose memory contents and cost CPU on demand).
func WithPprof(on bool) Option { return func(s *Server) { s.pprof = on } }

// WithHandler serves h at pattern on the admin listener (never on the
// health listener), e.g. the service switches API.
func WithHandler(pattern string, h http.Handler) Option {
	return func(s *Server) { s.extra = append(s.extra, extraHandler{pattern, h}) }
}

type extraHandler struct {
	pattern string
	h       http.Handler
}

// New returns an admin server exposing m and, on /config, the value config
// returns (marshalled to JSON; the config model keeps secrets out of JSON).
func New(m *Metrics, config func() any, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{metrics: m, config: config, log: log, checks: map[string]Check{}}
	for _, o := range opts {
		o(s)
	}
	mux := s.healthMux(true)
	mux.HandleFunc("GET /config", s.configz)
	if s.migrate != nil {
		s.migrateRoutes(mux)
	}
	for _, e := range s.extra {
		mux.Handle(e.pattern, s.mutating(e.h))
	}
	if s.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// No WriteTimeout on admin: a pprof CPU profile streams for its whole
	// duration. The health listener may face the network: bound it all.
	s.srv = &http.Server{Handler: s.guard(mux), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	s.health = &http.Server{Handler: s.healthMux(false), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	return s
}

// healthMux serves /healthz, /readyz and /metrics, nothing else. With
// detail /readyz says why each failing check fails (the admin listener);
// without (the health listener, which may face the network) it names
// them only: a failure's text can carry what a peer sent (an Envoy's NACK
// detail) or upstream addresses.
func (s *Server) healthMux(detail bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	if detail {
		mux.HandleFunc("GET /readyz", s.readyz)
	} else {
		mux.HandleFunc("GET /readyz", s.readyzNames)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{Registry: s.metrics.Registry}))
	return mux
}

// Handler returns the admin HTTP handler (for tests or mounting elsewhere).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// HealthHandler returns the health listener's handler: /healthz, /readyz
// and /metrics only.
func (s *Server) HealthHandler() http.Handler { return s.health.Handler }

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
	_, err := s.run()
	return err
}

// run runs every readiness check: the names of the failing ones, and
// their failures joined.
func (s *Server) run() ([]string, error) {
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
	var failing []string
	for i, c := range checks {
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", names[i], err))
			failing = append(failing, names[i])
		}
	}
	return failing, errors.Join(errs...)
}

// readyzNames is /readyz naming the failing checks only.
func (s *Server) readyzNames(w http.ResponseWriter, _ *http.Request) {
	if failing, err := s.run(); err != nil {
		http.Error(w, "not ready: "+strings.Join(failing, ", "), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
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

// Listen binds addr and starts serving the admin handler in the background.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		s.loopbackOnly = true
	}
	s.start(s.srv, ln, addr)
	s.ln = ln
	return nil
}

// ListenHealth binds addr and starts serving the health handler (/healthz,
// /readyz, /metrics) in the background.
func (s *Server) ListenHealth(addr string) error {
	ln, err := s.serve(s.health, addr)
	if err != nil {
		return fmt.Errorf("health_address: %w", err)
	}
	s.healthLn = ln
	return nil
}

func (s *Server) serve(srv *http.Server, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s.start(srv, ln, addr)
	return ln, nil
}

// start serves srv on ln in the background.
func (s *Server) start(srv *http.Server, ln net.Listener, addr string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "address", addr, "err", err)
		}
	}()
}

// HealthAddr is the health listener's bound address (nil before
// ListenHealth).
func (s *Server) HealthAddr() net.Addr {
	if s.healthLn == nil {
		return nil
	}
	return s.healthLn.Addr()
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops both listeners, waiting for active requests up to ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range []*http.Server{s.srv, s.health} {
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}
