package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/runtime"
)

func init() {
	register(subcommand{Name: "validate", Short: "check a config file: prints OK or the field errors (exit 1)", Run: validateCmd})
}

// errInvalidConfig is returned after the field errors were printed.
var errInvalidConfig = errors.New("config is invalid")

func validateCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	path := fs.String("c", "", "config file (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errNoConfig
	}
	cfg, err := config.Load(*path)
	if err == nil {
		err = runtime.Check(cfg) // builds the declarative codecs too
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stdout, strings.TrimPrefix(line, config.ErrInvalid.Error()+": "))
		}
		return errInvalidConfig
	}
	fmt.Println("OK")
	return nil
}
