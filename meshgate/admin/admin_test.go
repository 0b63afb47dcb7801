package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
)

func TestEndpoints(t *testing.T) {
	m := NewMetrics()
	m.Requests.WithLabelValues("l", "1", "u", "OK").Inc()
	s := New(m, func() any { return map[string]string{"listener": "l"} }, nil)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path string) (int, string) { return testkit.Get(t, srv.URL+path) }
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, _ := get("/readyz"); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	s.SetReadiness("b", func() error { return errors.New("b down") })
	s.SetReadiness("a", func() error { return errors.New("a down") })
	c, body := get("/readyz")
	if c != 503 || !strings.Contains(body, "a: a down\nb: b down") {
		t.Fatalf("readyz %d %q", c, body)
	}
	s.SetReadiness("a", nil)
	s.SetReadiness("b", nil)
	if c, _ := get("/readyz"); c != 200 {
		t.Fatalf("readyz after removal %d", c)
	}
	if _, body := get("/metrics"); !strings.Contains(body, `meshgate_requests_total{code="OK",listener="l",route="1",upstream="u"} 1`) || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %.300s", body)
	}
	if _, body := get("/config"); !strings.Contains(body, `"listener": "l"`) {
		t.Fatalf("config %q", body)
	}
}

// serveAdmin starts s on real loopback sockets (admin and health) and
// returns a GET helper per listener.
func serveAdmin(t *testing.T, s *Server) (admin, health func(path string) (int, string)) {
	t.Helper()
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.ListenHealth("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	getter := func(base string) func(string) (int, string) {
		return func(path string) (int, string) { return testkit.Get(t, "http://"+base+path) }
	}
	return getter(s.Addr().String()), getter(s.HealthAddr().String())
}

var pprofPaths = []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/debug/pprof/heap"}

// TestPprofOffByDefault: without WithPprof(true) no pprof endpoint exists.
func TestPprofOffByDefault(t *testing.T) {
	admin, _ := serveAdmin(t, New(NewMetrics(), nil, nil))
	for _, p := range pprofPaths {
		if c, _ := admin(p); c != http.StatusNotFound {
			t.Errorf("%s: %d, want 404 with pprof off", p, c)
		}
	}
	if c, _ := admin("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
}

// TestPprofEnabled: WithPprof(true) serves pprof on the admin listener
// only.
func TestPprofEnabled(t *testing.T) {
	admin, health := serveAdmin(t, New(NewMetrics(), nil, nil, WithPprof(true)))
	for _, p := range pprofPaths {
		if c, _ := admin(p); c != 200 {
			t.Errorf("admin %s: %d, want 200 with pprof on", p, c)
		}
		if c, _ := health(p); c != http.StatusNotFound {
			t.Errorf("health %s: %d, want 404", p, c)
		}
	}
}

// TestHealthListenerServesOnlyHealth: the health listener serves exactly
// /healthz, /readyz and /metrics — never /config or pprof, even when pprof
// is enabled on the admin listener.
func TestHealthListenerServesOnlyHealth(t *testing.T) {
	m := NewMetrics()
	m.Requests.WithLabelValues("l", "1", "u", "OK").Inc()
	s := New(m, func() any { return map[string]string{"secret-ish": "config"} }, nil, WithPprof(true))
	admin, health := serveAdmin(t, s)
	if c, _ := health("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, _ := health("/readyz"); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	s.SetReadiness("x", func() error { return errors.New("x down: detail from a peer") })
	// The health listener names the failing check; the reason (which may
	// quote a peer) is only on the admin listener.
	if c, body := health("/readyz"); c != 503 || !strings.Contains(body, "not ready: x") || strings.Contains(body, "detail") {
		t.Fatalf("health readyz not ready: %d %q", c, body)
	}
	if c, body := admin("/readyz"); c != 503 || !strings.Contains(body, "x down: detail from a peer") {
		t.Fatalf("admin readyz not ready: %d %q", c, body)
	}
	if c, body := health("/metrics"); c != 200 || !strings.Contains(body, "meshgate_requests_total") {
		t.Fatalf("metrics %d %.200s", c, body)
	}
	for _, p := range append([]string{"/config", "/", "/config/", "/healthz/x", "/metricsx"}, pprofPaths...) {
		if c, body := health(p); c != http.StatusNotFound {
			t.Errorf("health %s: %d %.80q, want 404", p, c, body)
		}
	}
	// The admin listener still has /config.
	if c, body := admin("/config"); c != 200 || !strings.Contains(body, "secret-ish") {
		t.Fatalf("admin /config %d %q", c, body)
	}
}
