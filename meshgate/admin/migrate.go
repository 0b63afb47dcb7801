package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/override"
	"github.com/meshgate/meshgate/meshgate/shadow"
)

// Migration is what the /migrate endpoints serve (a *migrate.Controller).
type Migration interface {
	Status() migrate.Status
	Diffs(route string, limit int) []shadow.Diff
	SetOverride(route, backend, reason string) (override.Entry, error)
	ClearOverride(route string) (bool, error)
	// Token is required from non-loopback peers on mutations ("" = only
	// loopback peers may mutate).
	Token() string
}

var _ Migration = (*migrate.Controller)(nil)

// WithMigrate serves migration control on the admin listener (never on the
// health listener):
//
//	GET    /migrate/status                 routes, split, per-side rate, error rate, p99 (JSON)
//	GET    /migrate/diffs?route=R&limit=N  recent shadow mismatches, newest first (JSON)
//	GET    /migrate/override               active overrides (JSON)
//	POST   /migrate/override               {"route","backend","reason"}: every request of route to backend ("" = backends[0])
//	DELETE /migrate/override?route=R       clear route's override
//
// Mutations are accepted from loopback peers, or with "Authorization:
// Bearer <migrate.token>" from others; POST needs Content-Type
// application/json (a browser form cannot send it without a CORS
// preflight, which this endpoint never grants).
func WithMigrate(m Migration) Option { return func(s *Server) { s.migrate = m } }

func (s *Server) migrateRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /migrate/status", func(w http.ResponseWriter, _ *http.Request) {
		s.writeJSON(w, http.StatusOK, s.migrate.Status())
	})
	mux.HandleFunc("GET /migrate/diffs", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		d := s.migrate.Diffs(r.URL.Query().Get("route"), limit)
		if d == nil {
			d = []shadow.Diff{}
		}
		s.writeJSON(w, http.StatusOK, map[string]any{"diffs": d})
	})
	mux.HandleFunc("GET /migrate/override", func(w http.ResponseWriter, _ *http.Request) {
		s.writeJSON(w, http.StatusOK, map[string]any{"overrides": s.migrate.Status().Overrides})
	})
	mux.HandleFunc("POST /migrate/override", func(w http.ResponseWriter, r *http.Request) {
		if !s.migrateAllowed(w, r) {
			return
		}
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
			s.writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
		var req struct {
			Route   string `json:"route"`
			Backend string `json:"backend"`
			Reason  string `json:"reason"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			s.writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
			return
		}
		if req.Route == "" {
			s.writeError(w, http.StatusBadRequest, "route: required")
			return
		}
		e, err := s.migrate.SetOverride(req.Route, req.Backend, clip(req.Reason, 256))
		switch {
		case errors.Is(err, migrate.ErrNotFound):
			s.writeError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, migrate.ErrNoSplit):
			s.writeError(w, http.StatusConflict, err.Error())
		case err != nil: // in force, but not persisted
			s.writeJSON(w, http.StatusInternalServerError, map[string]any{"override": e, "error": err.Error()})
		default:
			s.writeJSON(w, http.StatusOK, map[string]any{"override": e})
		}
	})
	mux.HandleFunc("DELETE /migrate/override", func(w http.ResponseWriter, r *http.Request) {
		if !s.migrateAllowed(w, r) {
			return
		}
		route := r.URL.Query().Get("route")
		if route == "" {
			s.writeError(w, http.StatusBadRequest, "route: required")
			return
		}
		ok, err := s.migrate.ClearOverride(route)
		switch {
		case err != nil:
			s.writeError(w, http.StatusInternalServerError, err.Error())
		case !ok:
			s.writeError(w, http.StatusNotFound, "no override for route "+strconv.Quote(route))
		default:
			s.writeJSON(w, http.StatusOK, map[string]any{"cleared": route})
		}
	})
}

// migrateAllowed admits loopback peers, and others with the bearer token
// (migrate.token; none: loopback only). It guards every admin mutation.
func (s *Server) migrateAllowed(w http.ResponseWriter, r *http.Request) bool {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return true
		}
	}
	tok := ""
	if s.migrate != nil {
		tok = s.migrate.Token()
	}
	if tok == "" {
		s.writeError(w, http.StatusForbidden, "overrides can only be changed from loopback (set migrate.token to allow remote operators)")
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meshgate-migrate"`)
		s.writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return false
	}
	return true
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		s.log.Warn("admin: encoding JSON", "err", err)
	}
}

func (s *Server) writeError(w http.ResponseWriter, code int, msg string) {
	s.writeJSON(w, code, map[string]string{"error": msg})
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 { // UTF-8 boundary
		n--
	}
	return s[:n]
}
