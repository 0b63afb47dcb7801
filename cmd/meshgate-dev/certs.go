package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/meshgate/meshgate/internal/testpki"
)

func init() {
	register(subcommand{Name: "certs", Short: "write a throw-away CA and the certificates the shipped examples name (examples/xds.yaml, docker/compose)", Run: runCerts})
}

// exampleLeaves are the leaves examples/xds.yaml and docker/compose name
// under /certs, with the SANs their server_name and identities expect
// (docker/compose/certs/README).
var exampleLeaves = []struct {
	name string
	sans []string
}{
	{"xds", []string{"meshgate-xds"}},
	{"idc-xds", []string{"spiffe://meshgate.bridge/envoy/idc"}},
	{"cloud-xds", []string{"spiffe://meshgate.bridge/envoy/cloud", "spiffe://mesh.example/ns/edge/sa/cloud"}},
	{"idc", []string{"idc"}},
	{"cloud", []string{"cloud"}},
	{"legacy-client", []string{"legacy-client"}},
}

func runCerts(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write ca.pem and <name>.pem / <name>-key.pem into (created; e.g. /certs)")
	days := fs.Int("days", 7, "validity of the CA and the certificates, in days")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("certs: -out is required")
	}
	if *days < 1 {
		return errors.New("certs: -days must be at least 1")
	}
	if err := os.MkdirAll(*out, 0o750); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	ca, err := testpki.NewCAValidFor("meshgate-example-ca", time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	if _, err := ca.WriteCA(*out); err != nil {
		return err
	}
	for _, l := range exampleLeaves {
		if _, _, err := ca.Issue(*out, l.name, l.sans...); err != nil {
			return err
		}
	}
	fmt.Printf("wrote ca.pem and %d certificates to %s (throw-away, for trying the examples; not for production)\n", len(exampleLeaves), *out)
	return nil
}
