package admin

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// Hostile requests to the admin and health listeners, over real loopback
// sockets unless a non-loopback peer is needed.

// switchesServer is an admin server with the real service switches API
// (one switch, "feature") and the migration API (token tok), listening.
func switchesServer(t *testing.T, tok string) (*Server, *resilience.Switches) {
	t.Helper()
	sw := resilience.NewSwitches([]config.Switch{{Name: "feature"}}, nil)
	h := resilience.Handler(func() *resilience.Switches { return sw })
	ms, _ := migrateServer(t, tok)
	s := New(NewMetrics(), func() any { return map[string]string{"k": "v"} }, nil,
		WithMigrate(ms.migrate), WithHandler("/switches", h), WithHandler("/switches/", h))
	serveAdmin(t, s)
	return s, sw
}

func request(t *testing.T, method, url, host string, hdr ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAttackConfigGetOnly: /config answers GET (and HEAD) only.
func TestAttackConfigGetOnly(t *testing.T) {
	s, _ := switchesServer(t, "")
	base := "http://" + s.Addr().String()
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		if c := request(t, m, base+"/config", ""); c != http.StatusMethodNotAllowed {
			t.Errorf("%s /config: %d, want 405", m, c)
		}
	}
	if c := request(t, "GET", base+"/config", ""); c != 200 {
		t.Fatalf("GET /config: %d", c)
	}
}

// TestAttackCrossOriginMutation: a page in the operator's browser cannot
// flip a service switch or set an override on a loopback admin endpoint
// (a form POST needs no CORS preflight); curl-like clients still can.
func TestAttackCrossOriginMutation(t *testing.T) {
	s, sw := switchesServer(t, "")
	base := "http://" + s.Addr().String()
	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "http://evil.example"},
	} {
		if c := request(t, "POST", base+"/switches/feature?off=1", "", hdr...); c != http.StatusForbidden {
			t.Errorf("POST /switches/feature with %v: %d, want 403", hdr, c)
		}
		if sw.Get("feature").Off() {
			t.Fatalf("switch turned off by a cross-origin request (%v)", hdr)
		}
		if c := request(t, "DELETE", base+"/migrate/override?route=in/1", "", hdr...); c != http.StatusForbidden {
			t.Errorf("DELETE /migrate/override with %v: %d, want 403", hdr, c)
		}
	}
	if c := request(t, "POST", base+"/switches/feature?off=1", ""); c != 200 || !sw.Get("feature").Off() {
		t.Fatalf("POST from a non-browser client: %d, off=%v", c, sw.Get("feature").Off())
	}
}

// TestAttackDNSRebinding: on a loopback admin address a request naming
// another host (a rebound DNS name) is refused 421 before any handler;
// IP literals and localhost are served.
func TestAttackDNSRebinding(t *testing.T) {
	s, _ := switchesServer(t, "")
	addr := s.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	for _, p := range []string{"/config", "/metrics", "/readyz", "/switches"} {
		if c := request(t, "GET", "http://"+addr+p, "evil.example:"+port); c != http.StatusMisdirectedRequest {
			t.Errorf("GET %s as evil.example: %d, want 421", p, c)
		}
	}
	for _, h := range []string{addr, "localhost:" + port, "LOCALHOST", "127.0.0.1", "[::1]:" + port} {
		if c := request(t, "GET", "http://"+addr+"/config", h); c != 200 {
			t.Errorf("GET /config as %q: %d, want 200", h, c)
		}
	}
}

// TestAttackRemoteSwitchMutation: a non-loopback peer may read the
// switches but not change them without the token (unit test of the
// handler: a real non-loopback socket is not available in a test).
func TestAttackRemoteSwitchMutation(t *testing.T) {
	for _, c := range []struct {
		token, auth string
		want        int
	}{
		{"", "", http.StatusForbidden},
		{"0123456789abcdef", "Bearer wrong", http.StatusUnauthorized},
		{"0123456789abcdef", "Bearer 0123456789abcdef", http.StatusOK},
	} {
		s, sw := switchesServer(t, c.token)
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			req := httptest.NewRequest(m, "/switches/feature?off=1", nil)
			req.RemoteAddr, req.Host = "10.0.0.8:5", "10.0.0.1"
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			if w.Code != c.want {
				t.Errorf("%s from 10.0.0.8 token %q auth %q: %d %s, want %d", m, c.token, c.auth, w.Code, w.Body, c.want)
			}
			if c.want != http.StatusOK && sw.Get("feature").Off() {
				t.Fatalf("switch changed by a refused %s", m)
			}
		}
		req := httptest.NewRequest("GET", "/switches", nil)
		req.RemoteAddr, req.Host = "10.0.0.8:5", "10.0.0.1"
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code != 200 {
			t.Errorf("GET /switches from 10.0.0.8: %d", w.Code)
		}
	}
}

// TestAttackSlowBody: a request that announces a body and dribbles it
// loses its connection after BodyTimeout (it held it for ever before).
func TestAttackSlowBody(t *testing.T) {
	old := BodyTimeout
	BodyTimeout = 300 * time.Millisecond
	t.Cleanup(func() { BodyTimeout = old })
	s, _ := switchesServer(t, "")
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /migrate/override HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"route\":"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400 (body timed out)", resp.StatusCode)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("no answer and the connection still open after %v", time.Since(start))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("answered after %v", d)
	}
}

// TestAttackHugeHeaders: 64 KiB of request headers get 431 on both
// listeners (MaxHeaderBytes 16 KiB).
func TestAttackHugeHeaders(t *testing.T) {
	s := New(NewMetrics(), nil, nil)
	serveAdmin(t, s)
	for _, a := range []string{s.Addr().String(), s.HealthAddr().String()} {
		if c := request(t, "GET", "http://"+a+"/healthz", "", "X-Pad", strings.Repeat("a", 64<<10)); c != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: %d, want 431", a, c)
		}
	}
}

// TestAttackConfigSecretFieldsRedacted walks every exported field of the
// config model (/config never shows unexported ones): a field whose YAML
// name says it holds a secret (key, keys, token, secret, password,
// credential; not a *_file path or a key_ids list) must carry json:"-",
// so /config can never show it. A new secret field without it fails here.
func TestAttackConfigSecretFieldsRedacted(t *testing.T) {
	secret := regexp.MustCompile(`(^|_)(keys?|token|secret|password|passwd|credentials?)$`)
	notSecret := map[string]bool{
		"config.listeners.auth.max_nonces_per_key":            true, // a count
		"config.listeners.listenerobservability.metadata.key": true, // a metadata key name
	}
	seen := map[reflect.Type]bool{}
	var walk func(tp reflect.Type, path string)
	walk = func(tp reflect.Type, path string) {
		for tp.Kind() == reflect.Pointer || tp.Kind() == reflect.Slice || tp.Kind() == reflect.Map || tp.Kind() == reflect.Array {
			tp = tp.Elem()
		}
		if tp.Kind() != reflect.Struct || seen[tp] || tp.PkgPath() != reflect.TypeFor[config.Config]().PkgPath() {
			return
		}
		seen[tp] = true
		for i := range tp.NumField() {
			f := tp.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if secret.MatchString(name) && f.Tag.Get("json") != "-" && !notSecret[path+"."+name] {
				t.Errorf("%s.%s (yaml %q) looks secret but is shown by /config (json tag %q)", path, f.Name, name, f.Tag.Get("json"))
			}
			walk(f.Type, path+"."+name)
		}
	}
	walk(reflect.TypeFor[config.Config](), "config")
	if len(seen) < 20 {
		t.Fatalf("walked only %d config types", len(seen))
	}
}
