package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEndpoints(t *testing.T) {
	m := NewMetrics()
	m.Requests.WithLabelValues("l", "1", "/a.B/C", "0").Inc()
	s := New(m, func() any { return map[string]string{"listener": "l"} }, nil)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
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
	if _, body := get("/metrics"); !strings.Contains(body, `meshgate_requests_total{cmd="1",listener="l",method="/a.B/C",result="0"} 1`) || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %.300s", body)
	}
	if _, body := get("/config"); !strings.Contains(body, `"listener": "l"`) {
		t.Fatalf("config %q", body)
	}
	if c, _ := get("/debug/pprof/cmdline"); c != 200 {
		t.Fatalf("pprof %d", c)
	}
}
