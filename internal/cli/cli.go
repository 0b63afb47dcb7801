// Package cli is the subcommand dispatch of MeshGate's two binaries (the
// product, meshgate, and the tools, meshgate-dev): `PROG NAME [flags]`,
// usage listing, exit codes, and a context cancelled on SIGINT/SIGTERM.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Command is one `PROG NAME ...` entry.
type Command struct {
	Name  string
	Short string
	// Run receives the arguments after the command name; ctx is cancelled
	// on SIGINT/SIGTERM.
	Run func(ctx context.Context, args []string) error
}

// Set is a program's commands.
type Set struct {
	prog  string
	blurb string
	cmds  map[string]Command
	// Elsewhere names commands that live in another binary: asking for one
	// says where it went instead of only "unknown command".
	Elsewhere map[string]string
}

// New returns an empty Set for program prog; blurb (may be empty) is
// printed under the usage line.
func New(prog, blurb string) *Set {
	return &Set{prog: prog, blurb: blurb, cmds: map[string]Command{}}
}

// Register adds c; a duplicate name panics (a programming error).
func (s *Set) Register(c Command) {
	if _, dup := s.cmds[c.Name]; dup {
		panic("duplicate subcommand " + c.Name)
	}
	s.cmds[c.Name] = c
}

func (s *Set) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\n", s.prog)
	if s.blurb != "" {
		fmt.Fprintf(w, "%s\n\n", s.blurb)
	}
	fmt.Fprintf(w, "commands:\n")
	names := make([]string, 0, len(s.cmds))
	for n := range s.cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, s.cmds[n].Short)
	}
	fmt.Fprintf(w, "\n%s <command> -h for the command's flags\n", s.prog)
}

// Main runs the command named by args[0] and returns the process exit
// code: 0, 1 when the command failed, 2 for a usage error.
func (s *Set) Main(args []string, stderr io.Writer) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		s.usage(stderr)
		return 2
	}
	c, ok := s.cmds[args[0]]
	if !ok {
		if where, moved := s.Elsewhere[args[0]]; moved {
			fmt.Fprintf(stderr, "%s: %q is not part of %s: run `%s %s`\n", s.prog, args[0], s.prog, where, args[0])
			return 2
		}
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", s.prog, args[0])
		s.usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx, args[1:]); err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", s.prog, c.Name, err)
		return 1
	}
	return 0
}
