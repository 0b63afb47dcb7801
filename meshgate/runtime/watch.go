package runtime

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchDebounce is how long file events must settle before a reload.
const WatchDebounce = 200 * time.Millisecond

// Watch reloads path on every receive from reload (the caller's SIGHUP
// handler; nil for none) and when the file changes (fsnotify on its
// directory, so editors' rename-and-replace is seen; events debounced).
// A rejected reload is logged and counted; the running config keeps
// serving. Watch returns when ctx ends.
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
			_ = r.ReloadFile(path)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) != abs || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) == 0 {
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
