package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchConfigMapSwap: a Kubernetes ConfigMap volume updates meshgate.yaml the way the
// kubelet's atomic writer does (new timestamped directory, "..data" symlink renamed over,
// the file itself a symlink through ..data that never changes); the runtime reloads.
func TestWatchConfigMapSwap(t *testing.T) {
	ep := backend(t, "A")
	dir := t.TempDir()
	gen := 0
	publish := func(content string) {
		t.Helper()
		gen++
		ts := filepath.Join(dir, fmt.Sprintf("..2026_11_30_07_00_%02d.%d", gen, gen))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "meshgate.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(yamlConfig(ep, ""))
	path := filepath.Join(dir, "meshgate.yaml")
	if err := os.Symlink(filepath.Join("..data", "meshgate.yaml"), path); err != nil {
		t.Fatal(err)
	}
	rt := start(t, mustLoad(t, path))
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); _ = rt.Watch(ctx, path) }()
	defer func() { cancel(); <-watched }()

	withExtra := yamlConfig(ep, `
  - name: extra
    kind: private
    address: 127.0.0.1:0
    routes: [{cmd: 9, method: /test.Svc/Who, upstream: demo}]`)
	// Publish until the reload is seen (the watcher starts asynchronously); bounded.
	deadline := time.Now().Add(5 * time.Second)
	for rt.Addr("extra") == nil {
		if time.Now().After(deadline) {
			t.Fatal("ConfigMap-style update not reloaded within 5s")
		}
		publish(withExtra)
		for end := time.Now().Add(4 * WatchDebounce); rt.Addr("extra") == nil && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
