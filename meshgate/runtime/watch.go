package runtime

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchDebounce is how long file events must settle before a reload.
const WatchDebounce = 200 * time.Millisecond

// Watch reloads path on SIGHUP and when the file changes (fsnotify on its
// directory, so editors' rename-and-replace and Kubernetes ConfigMap updates
// are seen; events debounced).
// A rejected reload is logged and counted; the running config keeps
// serving. Watch returns when ctx ends.
func (r *Runtime) Watch(ctx context.Context, path string) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	// A Kubernetes ConfigMap volume updates its files by swapping the "..data" symlink
	// the file links through: the file's own path sees no event, "..data" does.
	dataLink := filepath.Join(filepath.Dir(abs), "..data")
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return err
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
		case <-hup:
			r.log.Info("SIGHUP: reloading", "file", path)
			_ = r.ReloadFile(path)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if name := filepath.Clean(ev.Name); (name != abs && name != dataLink) || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) == 0 {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(WatchDebounce)
			} else {
				timer.Reset(WatchDebounce)
			}
			fire = timer.C
		case <-fire:
			fire = nil
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
