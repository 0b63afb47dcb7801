package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds"
)

func init() {
	register(subcommand{name: "envoy-bootstrap", short: "print the Envoy bootstrap YAML for one xds.envoy node", run: envoyBootstrapCmd})
	register(subcommand{name: "xds", short: "run only the xDS control plane of a config", run: xdsCmd})
}

func envoyBootstrapCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("envoy-bootstrap", flag.ContinueOnError)
	path := fs.String("c", "", "config file (required)")
	node := fs.String("node", "", "xds.envoy[].node to render (required)")
	delta := fs.Bool("delta", false, "use incremental (delta) xDS instead of state-of-the-world")
	xdsAddr := fs.String("xds-address", "", "override xds.address")
	adminAddr := fs.String("admin-address", "", "override the node's admin_address")
	out := fs.String("o", "", "write to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *node == "" {
		return errors.New("-c and -node are required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	b, err := xds.Bootstrap(cfg, *node, xds.BootstrapOptions{Delta: *delta, XDSAddress: *xdsAddr, AdminAddress: *adminAddr})
	if err != nil {
		return err
	}
	if *out != "" {
		return os.WriteFile(*out, b, 0o644)
	}
	_, err = os.Stdout.Write(b)
	return err
}

func xdsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("xds", flag.ContinueOnError)
	path := fs.String("c", "", "config file with an xds section (required)")
	level := fs.String("log-level", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("-c is required")
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
	s := xds.NewServer(xds.Options{Logger: log})
	defer s.Close()
	if err := s.Update(cfg); err != nil {
		return err
	}
	addr, err := s.Listen()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "xds listening on %s\n", addr)
	return s.Serve(ctx)
}
