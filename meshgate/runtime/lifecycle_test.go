package runtime

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAbortedReloadKeepsReplacedListener: a reload that replaces a
// listener (max_frame_size changes, same address) and then fails later in
// staging (a second listener's port is taken) is rejected, and the old
// listener still accepts new connections and answers. (Before the socket
// hand-off the old socket was closed during staging and never reopened.)
func TestAbortedReloadKeepsReplacedListener(t *testing.T) {
	ep := backend(t, "A")
	rt := start(t, mustParse(t, yamlConfig(ep, "")))
	addr := rt.Addr("mgp-in").String()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	y := strings.Replace(yamlConfig(ep, `
  - name: second
    kind: private
    address: `+taken.Addr().String()+`
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]`), "kind: private\n", "kind: private\n    max_frame_size: 65536\n", 1)
	err = rt.Reload(mustParse(t, y))
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "listeners[1]") {
		t.Fatalf("reload: %v, want rejected naming listeners[1]", err)
	}
	if got := rt.Addr("mgp-in").String(); got != addr {
		t.Fatalf("listener moved to %s, want %s", got, addr)
	}
	if rt.Config().Listeners[0].MaxFrameSize != 0 {
		t.Fatal("rejected config was stored")
	}
	cl := dial(t, rt, "mgp-in", 1)
	if r, err := call(cl, 1, "still here"); err != nil || string(r.Body) != "still here" {
		t.Fatalf("old listener after aborted reload: %+v %v", r, err)
	}
	// The same reload without the conflict commits on the same socket.
	taken.Close()
	if err := rt.Reload(mustParse(t, y)); err != nil {
		t.Fatal(err)
	}
	if got := rt.Addr("mgp-in").String(); got != addr {
		t.Fatalf("replaced listener on %s, want %s", got, addr)
	}
	cl2 := dial(t, rt, "mgp-in", 1)
	if r, err := call(cl2, 1, "new"); err != nil || string(r.Body) != "new" {
		t.Fatalf("replaced listener: %+v %v", r, err)
	}
}

// kubeletWrite publishes content the way kubelet updates a ConfigMap
// volume: a new timestamped directory, a "..data_tmp" symlink to it renamed
// over "..data", and (first time) "config.yaml" → "..data/config.yaml".
func kubeletWrite(t *testing.T, dir, stamp, content string) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_11_30_07_00_00."+stamp)
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "config.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "config.yaml")); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
}

// TestWatchKubeletConfigMapSwap: a ConfigMap update (kubelet's atomic
// "..data" symlink swap) reloads the config. The old watcher compared event
// names with the config path and never saw it.
func TestWatchKubeletConfigMapSwap(t *testing.T) {
	ep := backend(t, "A")
	dir := t.TempDir()
	kubeletWrite(t, dir, "1", yamlConfig(ep, ""))
	path := filepath.Join(dir, "config.yaml")
	rt := start(t, mustLoad(t, path))
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); _ = rt.Watch(ctx, path, nil) }()
	defer func() { cancel(); <-watched }()
	before := testutil.ToFloat64(rt.Metrics().Reloads.WithLabelValues("ok"))
	// The swap may land before or after the watch is in place (Watch
	// catches up with an edit it had no event for).
	waitFor(t, func() bool { return rt.Addr("mgp-in") != nil })
	kubeletWrite(t, dir, "2", yamlConfig(ep, `
  - name: extra
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 9, method: /test.Svc/Who, upstream: demo}]`))
	waitFor(t, func() bool { return rt.Addr("extra") != nil })
	cl := dial(t, rt, "extra", 1)
	if r, err := call(cl, 9, ""); err != nil || string(r.Body) != "A" {
		t.Fatalf("listener from the swapped ConfigMap: %+v %v", r, err)
	}
	// A second swap (the previous timestamped dir is gone) reloads again.
	kubeletWrite(t, dir, "3", yamlConfig(ep, ""))
	waitFor(t, func() bool { return rt.Addr("extra") == nil })
	// The reload counter moves just after the commit that removed the
	// listener: poll for it rather than read it once.
	waitFor(t, func() bool { return testutil.ToFloat64(rt.Metrics().Reloads.WithLabelValues("ok"))-before >= 2 })
	if got := testutil.ToFloat64(rt.Metrics().Reloads.WithLabelValues("ok")) - before; got != 2 {
		t.Errorf("%v reloads, want 2", got)
	}
}

// TestConfigStatusMetricsAndView: /metrics and /config show whether the
// last reload was applied, when, and which config (generation, hash) is
// served; a rejected reload is visible with its error; /config prints
// durations as durations.
func TestConfigStatusMetricsAndView(t *testing.T) {
	ep := backend(t, "A")
	rt := start(t, mustParse(t, yamlConfig(ep, "")))
	base := "http://" + rt.AdminAddr().String()
	_, m := get(t, base+"/metrics")
	hash1 := ConfigHash(rt.Config())
	for _, want := range []string{
		"meshgate_config_last_reload_success 1",
		"meshgate_config_generation 1",
		`meshgate_config_info{hash="` + hash1 + `"} 1`,
		"meshgate_config_last_reload_timestamp_seconds 1.",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	_, cj := get(t, base+"/config")
	for _, want := range []string{`"drain_timeout": "5s"`, `"timeout": "2s"`, `"generation": 1`, `"hash": "` + hash1 + `"`, `"success": true`} {
		if !strings.Contains(cj, want) {
			t.Errorf("/config lacks %s:\n%s", want, cj)
		}
	}

	bad := strings.Replace(yamlConfig(ep, ""), "upstreams:", "codecs: [{name: x, file: /nonexistent/x.yaml}]\nupstreams:", 1)
	if err := rt.Reload(mustParse(t, bad)); err == nil {
		t.Fatal("bad reload accepted")
	}
	_, m = get(t, base+"/metrics")
	if !strings.Contains(m, "meshgate_config_last_reload_success 0") || !strings.Contains(m, "meshgate_config_generation 1") {
		t.Errorf("after a rejected reload:\n%s", grepLines(m, "meshgate_config_"))
	}
	_, cj = get(t, base+"/config")
	if !strings.Contains(cj, `"success": false`) || !strings.Contains(cj, "codecs[0]") {
		t.Errorf("/config after a rejected reload:\n%s", cj)
	}

	good := strings.Replace(yamlConfig(ep, ""), "timeout: 2s", "timeout: 1500ms", 1)
	if err := rt.Reload(mustParse(t, good)); err != nil {
		t.Fatal(err)
	}
	hash2 := ConfigHash(rt.Config())
	_, m = get(t, base+"/metrics")
	for _, want := range []string{"meshgate_config_last_reload_success 1", "meshgate_config_generation 2", `meshgate_config_info{hash="` + hash2 + `"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if hash2 == hash1 || strings.Contains(m, hash1) {
		t.Errorf("hash not replaced: %s → %s", hash1, hash2)
	}
	if _, cj = get(t, base+"/config"); !strings.Contains(cj, `"timeout": "1.5s"`) {
		t.Errorf("/config after reload:\n%s", cj)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
