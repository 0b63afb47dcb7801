package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/meshgate/addrfile"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/connlimit"
	"github.com/meshgate/meshgate/meshgate/memtrim"
	"github.com/meshgate/meshgate/meshgate/runtime"
)

// errNoConfig: the product binary has no built-in config; the demo with
// bundled peers is in the tools binary.
var errNoConfig = errors.New("-c FILE is required (there is no built-in config); for the demo with bundled peers run `make run` or `meshgate-dev demo`")

func init() {
	register(subcommand{Name: "run", Short: "run the bridge on a config file (-c)", Run: runCmd})
}

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("c", "", "config file (required); reloaded on change and SIGHUP")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json (one JSON object per line)")
	addrFile := fs.String("address-file", "", "write the bound addresses as JSON to this file (atomically: temp file + rename) once every listener is up and again after each applied reload:\n{\"generation\": N, \"listeners\": {NAME: \"host:port\"}, \"admin\": ..., \"health\": ..., \"xds\": ...}\n(lets a config use port 0, e.g. address: 127.0.0.1:0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errNoConfig
	}
	if *addrFile != "" {
		if st, err := os.Stat(filepath.Dir(*addrFile)); err != nil || !st.IsDir() {
			return fmt.Errorf("-address-file %s: its directory must exist", *addrFile)
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return err
	}
	log, err := newLogger(os.Stderr, *logFormat, lvl)
	if err != nil {
		return err
	}
	log.Info("starting", "config", *path)
	hup := newHupHandler(log, sighup)
	defer hup.stop()

	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}

	// The Go runtime already raises the soft fd limit on Linux; doing it
	// here too makes it explicit and logs the limit fd_reserve works from.
	if nofile, err := connlimit.RaiseNOFILE(); err != nil {
		log.Warn("cannot raise RLIMIT_NOFILE", "err", err)
	} else {
		log.Info("file descriptors", "limit", nofile, "reserve", cfg.Defaults.Limits.FDReserve)
	}
	var rt *runtime.Runtime
	opts := runtime.Options{Logger: log}
	if *addrFile != "" {
		opts.OnReload = func() {
			if err := addrfile.Write(*addrFile, rt.BoundAddrs()); err != nil {
				log.Error("cannot write the address file", "err", err)
			}
		}
	}
	rt, err = runtime.New(cfg, opts)
	if err != nil {
		return err
	}
	if *addrFile != "" {
		if err := addrfile.Write(*addrFile, rt.BoundAddrs()); err != nil {
			_ = rt.Shutdown(context.Background())
			return err
		}
	}
	// Start-up touched code and data it will not run again; let the kernel
	// map the binary page by page from now on (package memtrim), and once
	// more when the start-up tail has run.
	trimExecutable(log)
	trimDone := make(chan struct{})
	go func() {
		defer close(trimDone)
		t := time.NewTimer(retrimAfter)
		defer t.Stop()
		select {
		case <-t.C:
			trimExecutable(log)
		case <-ctx.Done():
		}
	}()
	defer func() { <-trimDone }()
	endpoints := "/healthz /readyz /metrics /config"
	if cfg.Admin.PProf {
		endpoints += " /debug/pprof/"
	}
	log.Info("admin", "url", "http://"+rt.AdminAddr().String(), "endpoints", endpoints)
	if ha := rt.Admin().HealthAddr(); ha != nil {
		log.Info("health", "url", "http://"+ha.String(), "endpoints", "/healthz /readyz /metrics")
	}
	watchDone := make(chan struct{})
	wctx, wcancel := context.WithCancel(ctx)
	reloads := hup.running() // a SIGHUP received during start-up is delivered now
	go func() {
		defer close(watchDone)
		if err := rt.Watch(wctx, *path, reloads); err != nil {
			log.Error("config watch stopped", "err", err)
		}
	}()
	<-ctx.Done()
	hup.draining()
	log.Info("signal received: draining", "timeout", cfg.Defaults.DrainTimeout)
	stopRepeat := repeatedSignals(log, cfg.Defaults.DrainTimeout)
	defer stopRepeat()
	wcancel()
	<-watchDone
	err = rt.Shutdown(context.Background())
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// retrimAfter is when the executable's pages are trimmed a second time.
// The first trim runs once every listener is up, but the goroutines start-up
// left behind (upstream connections, health checks, the admin server, the
// first GC) run their first code for a moment more, and on this kernel a
// fault maps the page-cache folio around the faulting page whatever the
// advice: measured on the bench's S3 config 4 s after start, VmRSS 18.2–20.0
// MB with one trim, 16.0–16.4 MB with the second (docs/performance.md).
const retrimAfter = 2 * time.Second

// trimExecutable drops the executable's resident read-only pages
// (memtrim.Executable) and logs what it did.
func trimExecutable(log *slog.Logger) {
	if st, err := memtrim.Executable(); err != nil {
		log.Warn("cannot trim the executable's resident pages", "err", err)
	} else {
		log.Debug("executable pages trimmed", "mappings", st.Mappings, "skipped", st.Skipped, "dropped_bytes", st.Dropped)
	}
}

// repeatedSignals logs each SIGTERM/SIGINT that arrives while draining:
// it does not cut the drain short (the requests in flight still get their
// answers), which ends within drain_timeout anyway; SIGKILL stops at
// once. It returns the function that stops listening.
func repeatedSignals(log *slog.Logger, drain time.Duration) func() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				log.Warn("signal ignored: already draining", "signal", sig.String(), "drain_timeout", drain)
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// hupHandler owns SIGHUP for the whole life of `meshgate run`. During
// start-up a SIGHUP is queued and delivered as one reload once the runtime
// runs; while running each SIGHUP asks for a reload; while draining it is
// logged and ignored.
type hupHandler struct {
	log     *slog.Logger
	reload  chan struct{} // capacity 1: reload requests coalesce
	mu      sync.Mutex
	state   int // hupStarting, hupRunning, hupDraining
	pending bool
	quit    chan struct{}
	done    chan struct{}
}

const (
	hupStarting = iota
	hupRunning
	hupDraining
)

func newHupHandler(log *slog.Logger, sig <-chan os.Signal) *hupHandler {
	h := &hupHandler{log: log, reload: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.quit:
				return
			case <-sig:
				h.onHUP()
			}
		}
	}()
	return h
}

func (h *hupHandler) onHUP() {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.state == hupStarting:
		h.pending = true
		h.log.Info("SIGHUP during start-up: reload queued until started")
	case h.state == hupRunning:
		h.log.Info("SIGHUP: reloading")
		h.request()
	default:
		h.log.Warn("SIGHUP ignored: draining")
	}
}

func (h *hupHandler) request() {
	select {
	case h.reload <- struct{}{}:
	default: // one is already pending
	}
}

// running marks start-up done and returns the reload requests; a SIGHUP
// queued during start-up is already in it.
func (h *hupHandler) running() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state = hupRunning
	if h.pending {
		h.pending = false
		h.request()
	}
	return h.reload
}

func (h *hupHandler) draining() {
	h.mu.Lock()
	h.state = hupDraining
	h.mu.Unlock()
}

func (h *hupHandler) stop() {
	h.draining()
	close(h.quit)
	<-h.done
}
