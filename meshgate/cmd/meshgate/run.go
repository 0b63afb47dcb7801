package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/connlimit"
	"github.com/meshgate/meshgate/meshgate/runtime"
)

// errNoConfig: the product binary has no built-in config; the demo with
// bundled peers is in the tools binary.
var errNoConfig = errors.New("-c FILE is required (there is no built-in config); for the demo with bundled peers run `make run` or `meshgate-dev demo`")

func init() {
	register(subcommand{name: "run", short: "run the bridge on a config file (-c)", run: runCmd})
}

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("c", "", "config file (required); reloaded on change and SIGHUP")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errNoConfig
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

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
	rt, err := runtime.New(cfg, runtime.Options{Logger: log})
	if err != nil {
		return err
	}
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
	go func() {
		defer close(watchDone)
		if err := rt.Watch(wctx, *path); err != nil {
			log.Error("config watch stopped", "err", err)
		}
	}()
	<-ctx.Done()
	log.Info("signal received: draining", "timeout", cfg.Defaults.DrainTimeout)
	wcancel()
	<-watchDone
	err = rt.Shutdown(context.Background())
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}
