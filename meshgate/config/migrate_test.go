package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const migrateGood = `
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:7000
    routes:
      - cmd: 1
        method: /demo.Echo/Echo
        split:
          backends:
            - {upstream: g}
            - {upstream: g2, percent: 5, method: /demo.EchoV2/Echo}
          allow: {uins: [42, 7], file: allow.txt}
          callers: [{caller: billing, upstream: g2}]
        shadow: {upstream: g2, ignore_ext: [32769]}
      - {cmd: 2, method: /demo.Echo/Other, upstream: g}
  - name: out
    kind: grpc
    address: 127.0.0.1:7001
    routes:
      - {method: /legacy.L/*, cmd: 1, upstream: p}
upstreams:
  - {name: g, protocol: grpc, endpoints: [127.0.0.1:9000]}
  - {name: g2, protocol: grpc, endpoints: [127.0.0.1:9001]}
  - {name: p, protocol: private, endpoints: [127.0.0.1:8000]}
`

func writeAllow(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "allow.txt"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMigrateParse(t *testing.T) {
	dir := writeAllow(t, "# testers\n1001\n\n 7 # dup of inline\n")
	c, err := Parse([]byte(migrateGood), dir)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Listeners[0].Routes[0]
	if r.Upstream != "g" || r.Split.By != SplitByUINBucket || r.Split.Allow.Upstream != "g2" {
		t.Fatalf("split defaults: %+v %+v", r, r.Split)
	}
	if got := r.Split.Allow.AllUINs(); !slices.Equal(got, []uint64{7, 42, 1001}) {
		t.Fatalf("allow uins %v", got)
	}
	if sh := r.Shadow; sh.Percent != 100 || sh.Concurrency != DefaultShadowConcurrency || sh.Queue != DefaultShadowQueue || sh.Timeout != DefaultTimeout || sh.Diffs.Keep != DefaultShadowDiffsKeep || sh.Diffs.Sample != 1 {
		t.Fatalf("shadow defaults %+v", sh)
	}
	if c.Migrate.Window != DefaultMigrateWindow {
		t.Fatalf("window %v", c.Migrate.Window)
	}
	if ids := RouteIDs(&c.Listeners[0]); !slices.Equal(ids, []string{"in/1", "in/2"}) {
		t.Fatalf("ids %v", ids)
	}
	if ids := RouteIDs(&c.Listeners[1]); !slices.Equal(ids, []string{"out/legacy.L/*"}) {
		t.Fatalf("ids %v", ids)
	}
}

// The allow-list file is read again on every parse (reload).
func TestMigrateAllowFileReloaded(t *testing.T) {
	dir := writeAllow(t, "1001\n")
	c1, err := Parse([]byte(migrateGood), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "allow.txt"), []byte("2002\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := Parse([]byte(migrateGood), dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := c1.Listeners[0].Routes[0].Split.Allow.AllUINs(), c2.Listeners[0].Routes[0].Split.Allow.AllUINs(); !slices.Contains(a, 1001) || slices.Contains(b, 1001) || !slices.Contains(b, 2002) {
		t.Fatalf("before %v after %v", a, b)
	}
}

func TestMigrateErrorsNameTheField(t *testing.T) {
	dir := writeAllow(t, "1\n")
	// a bad allow file names the field, the file and the line
	_, err := Parse([]byte(migrateGood), writeAllow(t, "1\nx2\n"))
	if err == nil || !strings.Contains(err.Error(), "listeners[0].routes[0].split.allow.file:") || !strings.Contains(err.Error(), "allow.txt:2") {
		t.Errorf("bad allow file: %v", err)
	}
	// two routes with one explicit id
	y := strings.Replace(migrateGood, "split:\n", "split:\n          name: dup\n", 1)
	y = strings.Replace(y, "{cmd: 2, method: /demo.Echo/Other, upstream: g}", "{cmd: 2, method: /demo.Echo/Other, upstream: g, split: {name: dup, backends: [{upstream: g}]}}", 1)
	if _, err := Parse([]byte(y), dir); err == nil || !strings.Contains(err.Error(), "listeners[0].routes[1].split.name:") {
		t.Errorf("dup id: %v", err)
	}
	// percents that sum to 100 when backends[0] sets one (90+5 is a row of
	// TestErrorsNameTheField)
	y = strings.Replace(migrateGood, "- {upstream: g}", "- {upstream: g, percent: 95}", 1)
	if _, err := Parse([]byte(y), dir); err != nil {
		t.Errorf("95+5: %v", err)
	}
}

func TestMigrateTokenFile(t *testing.T) {
	dir := writeAllow(t, "1\n")
	if err := os.WriteFile(filepath.Join(dir, "tok"), []byte("0123456789abcdef0123\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(strings.Replace(migrateGood, "upstreams:\n", "migrate: {token_file: tok, window: 5s}\nupstreams:\n", 1)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Migrate.ResolvedToken() != "0123456789abcdef0123" || c.Migrate.Window != 5*time.Second {
		t.Fatalf("migrate %+v", c.Migrate)
	}
}

// backends[0]'s method (private listener) or cmd (grpc listener) is the
// route's own when the route leaves it out.
func TestMigrateBaseBackendFields(t *testing.T) {
	y := `
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:7000
    routes:
      - {cmd: 1, split: {backends: [{upstream: g, method: /a.B/C}, {upstream: g2, method: /a.B/D, percent: 1}]}}
  - name: out
    kind: grpc
    address: 127.0.0.1:7001
    routes:
      - {method: /legacy.L/X, split: {backends: [{upstream: p, cmd: 9}, {upstream: g, percent: 1}]}}
upstreams:
  - {name: g, protocol: grpc, endpoints: [127.0.0.1:9000]}
  - {name: g2, protocol: grpc, endpoints: [127.0.0.1:9001]}
  - {name: p, protocol: private, endpoints: [127.0.0.1:8000]}
`
	c, err := Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Listeners[0].Routes[0]; r.Method != "/a.B/C" || r.Upstream != "g" {
		t.Fatalf("private route %+v", r)
	}
	if r := c.Listeners[1].Routes[0]; r.Cmd != 9 || r.Upstream != "p" {
		t.Fatalf("grpc route %+v", r)
	}
}
