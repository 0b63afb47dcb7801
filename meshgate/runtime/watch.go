package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/meshgate/meshgate/meshgate/config"
)

// WatchDebounce is how long file events must settle before a reload.
const WatchDebounce = 200 * time.Millisecond

// Watch reloads path on every receive from reload (the caller's SIGHUP
// handler; nil for none) and when the file's content changes. It watches
// the directory holding path (so editors' rename-and-replace is seen) and
// the directory of the file path resolves to through symlinks, and after
// any event there (debounced) re-resolves the symlinks and compares the
// content with what was last loaded: a Kubernetes ConfigMap volume, where
// kubelet swaps the "..data" symlink to a new timestamped directory and
// path is "..data/<key>" behind a symlink, reloads like a plain file.
// A file that already differs from the served config when Watch starts
// (edited after the runtime loaded it) is reloaded at once. A rejected
// reload is logged and counted; the running config keeps serving. Watch
// returns when ctx ends.
func (r *Runtime) Watch(ctx context.Context, path string, reload <-chan struct{}) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return err
	}
	target := ""    // directory of the resolved file, watched too
	var last []byte // hash of the content last loaded (or rejected)
	resolve := func() []byte {
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil
		}
		if d := filepath.Dir(real); d != target && d != filepath.Dir(abs) {
			if target != "" {
				_ = w.Remove(target)
			}
			if err := w.Add(d); err == nil {
				target = d
			}
		}
		data, err := os.ReadFile(real)
		if err != nil {
			return nil
		}
		h := sha256.Sum256(data)
		return h[:]
	}
	last = resolve()
	// The file may have changed between the load the runtime was started
	// from and the watch above being in place (no event for that): catch
	// up once, so an edit in that window is not taken as the baseline.
	if cfg, err := config.Load(path); err != nil || ConfigHash(cfg) != r.status.servedHash() {
		r.log.Info("config file differs from the served config: reloading", "file", path)
		_ = r.ReloadFile(path)
	}
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-reload:
			r.log.Info("reload requested", "file", path)
			last = resolve()
			_ = r.ReloadFile(path)
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			if timer == nil {
				timer = time.NewTimer(WatchDebounce)
			} else {
				timer.Reset(WatchDebounce)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			h := resolve()
			if h == nil || bytes.Equal(h, last) {
				continue // gone for now (mid-swap) or unchanged
			}
			last = h
			r.log.Info("config file changed: reloading", "file", path)
			_ = r.ReloadFile(path)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("config watch error", "err", err)
		}
	}
}
