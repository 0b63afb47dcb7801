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
	"os"

	"github.com/meshgate/meshgate/internal/cli"
)

// subcommand is one `meshgate-dev NAME ...` entry: Run receives the arguments
// after the name, with a context cancelled on SIGINT/SIGTERM.
type subcommand = cli.Command

var commands = cli.New("meshgate-dev", "developer tools for MeshGate (the proxy itself is the meshgate binary)")

func register(c subcommand) { commands.Register(c) }

func main() { os.Exit(commands.Main(os.Args[1:], os.Stderr)) }
