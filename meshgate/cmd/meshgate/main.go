// Command meshgate is the MeshGate product binary: the bridge (run,
// validate) and the xDS helpers (envoy-bootstrap, xds). The developer tools
// (reference legacy peers, call, bench, demo) are in cmd/meshgate-dev.
//
// Each subcommand lives in its own file and registers itself in init.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/meshgate/meshgate/internal/cli"
)

// subcommand is one `meshgate NAME ...` entry: Run receives the arguments
// after the name, with a context cancelled on SIGINT/SIGTERM.
type subcommand = cli.Command

var commands = cli.New("meshgate", "")

func register(c subcommand) { commands.Register(c) }

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
	// The tools moved to meshgate-dev: say so to whoever types the old name.
	commands.Elsewhere = map[string]string{"legacy-server": "meshgate-dev", "legacy-client": "meshgate-dev",
		"call": "meshgate-dev", "bench": "meshgate-dev", "demo": "meshgate-dev"}
	os.Exit(commands.Main(os.Args[1:], os.Stderr))
}
