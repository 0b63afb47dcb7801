// Command meshgate-dev is MeshGate's developer and test tooling, kept out of
// the product binary (meshgate): the reference legacy peers
// (legacy-server, legacy-client), a one-shot client (call mgp|grpc), the
// latency benchmark suite (bench) and the local demo (demo), which runs the
// bundled peers in-process and the product binary `meshgate run` as a child
// process.
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

// subcommand is one `meshgate-dev NAME ...` entry.
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
	fmt.Fprintf(os.Stderr, "usage: meshgate-dev <command> [flags]\n\ndeveloper tools for MeshGate (the proxy itself is the meshgate binary)\n\ncommands:\n")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-16s %s\n", n, subcommands[n].short)
	}
	fmt.Fprintf(os.Stderr, "\nmeshgate-dev <command> -h for the command's flags\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := subcommands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "meshgate-dev: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.run(ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "meshgate-dev %s: %v\n", c.name, err)
		os.Exit(1)
	}
}
