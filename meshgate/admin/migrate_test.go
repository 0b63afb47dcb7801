package admin

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/split"
)

func migrateServer(t *testing.T, token string) (*Server, *migrate.Controller) {
	t.Helper()
	m := NewMetrics()
	mc := migrate.New(m.Registry, nil)
	if err := mc.Configure(&config.Migrate{Window: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	rule, err := mc.Rule("in/1", &config.Split{Backends: []config.SplitBackend{{Upstream: "legacy"}, {Upstream: "new", Percent: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	mc.Publish([]migrate.Route{{ID: "in/1", Listener: "in", Label: "1", Rule: rule}, {ID: "in/2", Listener: "in", Label: "2", Upstream: "legacy"}})
	m.Route("in", "1", "new").Observe(codes.OK, time.Millisecond)
	s := New(m, nil, nil, WithMigrate(tokenMigration{mc, token}))
	return s, mc
}

type tokenMigration struct {
	*migrate.Controller
	tok string
}

func (t tokenMigration) Token() string { return t.tok }

func do(t *testing.T, method, url, ctype, body string, hdr ...string) (int, string) {
	t.Helper()
	return testkit.HTTP(t, method, url, ctype, body, hdr...)
}

// Over a real loopback socket: status, override set/clear, visible in
// /migrate/status and /metrics; wrong route/backend and bad requests
// rejected clearly.
func TestMigrateEndpoints(t *testing.T) {
	s, mc := migrateServer(t, "")
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(t.Context())
	base := "http://" + s.Addr().String()

	c, body := do(t, "GET", base+"/migrate/status", "", "")
	var st migrate.Status
	if err := json.Unmarshal([]byte(body), &st); c != 200 || err != nil {
		t.Fatalf("status %d %v %s", c, err, body)
	}
	if len(st.Routes) != 2 || st.Routes[0].Route != "in/1" || st.Routes[0].Backends[1].Percent != 5 || st.Routes[0].Backends[1].Total != 1 || st.Routes[1].Backends[0].Percent != 100 {
		t.Fatalf("status %s", body)
	}

	for _, bad := range []struct {
		ctype, body string
		code        int
	}{
		{"text/plain", `{"route":"in/1"}`, 415},
		{"application/json", `{"route":"in/9"}`, 404},
		{"application/json", `{"route":"in/1","backend":"nope"}`, 404},
		{"application/json", `{"route":"in/2"}`, 409},
		{"application/json", `{"route":"in/1","colour":"red"}`, 400},
		{"application/json", `{}`, 400},
	} {
		if c, body := do(t, "POST", base+"/migrate/override", bad.ctype, bad.body); c != bad.code || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %s %s: %d %s, want %d", bad.ctype, bad.body, c, body, bad.code)
		}
	}
	c, body = do(t, "POST", base+"/migrate/override", "application/json", `{"route":"in/1","reason":"incident 7"}`)
	if c != 200 || !strings.Contains(body, `"backend": "legacy"`) {
		t.Fatalf("rollback %d %s", c, body)
	}
	// a rule built for the route (as the data path holds it) obeys the override at once
	rule, err := mc.Rule("in/1", &config.Split{Backends: []config.SplitBackend{{Upstream: "legacy"}, {Upstream: "new", Percent: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	uin := uint64(1)
	for split.Bucket(uin) >= 500 { // a user on the new side
		uin++
	}
	if k, why := rule.Pick(uin, ""); k != 0 || why != split.ReasonOverride {
		t.Fatalf("override not in force: %d %v", k, why)
	}
	_, body = do(t, "GET", base+"/migrate/status", "", "")
	if !strings.Contains(body, `"reason": "incident 7"`) {
		t.Fatalf("override not in status: %s", body)
	}
	_, body = do(t, "GET", base+"/metrics", "", "")
	if !strings.Contains(body, `meshgate_migrate_override{backend="legacy",route="in/1"} 1`) || !strings.Contains(body, `meshgate_split_share{backend="new",route="in/1"} 0.05`) {
		t.Fatalf("metrics lack the override gauge or share")
	}
	if c, _ := do(t, "DELETE", base+"/migrate/override?route=in/1", "", ""); c != 200 {
		t.Fatalf("clear %d", c)
	}
	if c, _ := do(t, "DELETE", base+"/migrate/override?route=in/1", "", ""); c != 404 {
		t.Fatalf("second clear %d", c)
	}
	if c, body := do(t, "GET", base+"/migrate/diffs?limit=5", "", ""); c != 200 || !strings.Contains(body, `"diffs": []`) {
		t.Fatalf("diffs %d %s", c, body)
	}
	// the health listener never serves /migrate
	hs := httptest.NewServer(s.HealthHandler())
	defer hs.Close()
	if c, _ := do(t, "GET", hs.URL+"/migrate/status", "", ""); c != 404 {
		t.Fatalf("health listener served /migrate/status: %d", c)
	}
}

// Non-loopback peers need the bearer token (unit test of the admission
// function: a real socket from a non-loopback address is not available in
// a test).
func TestMigrateAllowed(t *testing.T) {
	for _, c := range []struct {
		token, remote, auth string
		want                int
	}{
		{"", "127.0.0.1:5", "", 200},
		{"", "[::1]:5", "", 200},
		{"", "10.0.0.8:5", "", 403},
		{"0123456789abcdef", "10.0.0.8:5", "", 401},
		{"0123456789abcdef", "10.0.0.8:5", "Bearer wrong", 401},
		{"0123456789abcdef", "10.0.0.8:5", "Bearer 0123456789abcdef", 200},
	} {
		s, _ := migrateServer(t, c.token)
		req := httptest.NewRequest("POST", "/migrate/override", strings.NewReader(`{"route":"in/1"}`))
		req.RemoteAddr = c.remote
		req.Header.Set("Content-Type", "application/json")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code != c.want {
			t.Errorf("token %q from %s auth %q: %d %s, want %d", c.token, c.remote, c.auth, w.Code, w.Body, c.want)
		}
	}
}
