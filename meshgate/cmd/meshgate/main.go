// Command meshgate is the MeshGate product binary: the bridge (run,
// validate) and the xDS helpers (envoy-bootstrap, xds). The developer tools
// (reference legacy peers, call, bench, demo) are in cmd/meshgate-dev.
//
// Each subcommand lives in its own file and registers itself in init.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// subcommand is one `meshgate NAME ...` entry.
type subcommand struct {
	name  string
	short string
	// run receives the arguments after the subcommand name. ctx is
	// cancelled on SIGINT/SIGTERM.
	run func(ctx context.Context, args []string) error
}

var subcommands = map[string]subcommand{}

func register(c subcommand) {
	if _, dup := subcommands[c.name]; dup {
		panic("duplicate subcommand " + c.name)
	}
	subcommands[c.name] = c
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: meshgate <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-16s %s\n", n, subcommands[n].short)
	}
	fmt.Fprintf(os.Stderr, "\nmeshgate <command> -h for the command's flags\n")
}

// sighup receives SIGHUP for the whole life of the process (registered
// first thing in main, so a SIGHUP never kills `meshgate run`: it reloads,
// or is queued during start-up, or is logged and ignored). Other commands
// restore the default action.
var sighup = make(chan os.Signal, 4)

func main() {
	signal.Notify(sighup, syscall.SIGHUP)
	if len(os.Args) < 2 || os.Args[1] != "run" {
		signal.Reset(syscall.SIGHUP)
	}
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := subcommands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "meshgate: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.run(ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "meshgate %s: %v\n", c.name, err)
		os.Exit(1)
	}
}
