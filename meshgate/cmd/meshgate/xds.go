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
	"github.com/meshgate/meshgate/xds/model"
)

func init() {
	register(subcommand{Name: "envoy-bootstrap", Short: "print the Envoy bootstrap YAML for one xds.envoy node", Run: envoyBootstrapCmd})
	register(subcommand{Name: "xds", Short: "run only the xDS control plane of a config", Run: xdsCmd})
}

func envoyBootstrapCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("envoy-bootstrap", flag.ContinueOnError)
	path := fs.String("c", "", "config file (required)")
	node := fs.String("node", "", "xds.envoy[].node to render (required)")
	delta := fs.Bool("delta", false, "use incremental (delta) xDS instead of state-of-the-world")
	xdsAddr := fs.String("xds-address", "", "override xds.address")
	adminAddr := fs.String("admin-address", "", "override the node's admin_address")
	out := fs.String("o", "", "write to this file instead of stdout")
	xdsCert := fs.String("xds-cert", "", "client certificate Envoy presents to the control plane (overrides the node's xds_tls)")
	xdsKey := fs.String("xds-key", "", "its private key")
	xdsCA := fs.String("xds-ca", "", "CA verifying the control plane's certificate")
	xdsSNI := fs.String("xds-server-name", "", "SNI and required DNS SAN of the control plane's certificate")
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
	opts := xds.BootstrapOptions{Delta: *delta, XDSAddress: *xdsAddr, AdminAddress: *adminAddr}
	if *xdsCert != "" || *xdsKey != "" || *xdsCA != "" {
		if *xdsCert == "" || *xdsKey == "" || *xdsCA == "" {
			return errors.New("-xds-cert, -xds-key and -xds-ca go together")
		}
		opts.XDSTLS = &model.ClientTLS{CertFile: *xdsCert, KeyFile: *xdsKey, CAFile: *xdsCA, ServerName: *xdsSNI}
	} else if *xdsSNI != "" {
		return errors.New("-xds-server-name needs -xds-cert, -xds-key and -xds-ca")
	}
	m, err := cfg.XDSModel()
	if err != nil {
		return err
	}
	b, err := xds.Bootstrap(m, *node, opts)
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
	var lvl slog.Level
	fs.TextVar(&lvl, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("-c is required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	m, err := cfg.XDSModel()
	if err != nil {
		return err
	}
	s := xds.NewServer(xds.Options{Logger: log})
	defer s.Close()
	if err := s.Update(m); err != nil {
		return err
	}
	addr, err := s.Listen()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "xds listening on %s\n", addr)
	return s.Serve(ctx)
}
