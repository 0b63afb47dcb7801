package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/e2e/harness"
)

// subcommands runs bin without arguments and returns the command names its
// usage lists (the indented lines after "commands:").
func subcommands(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin).CombinedOutput() // exits 2 with the usage
	_, list, ok := strings.Cut(string(out), "commands:\n")
	if !ok {
		t.Fatalf("%s: no command list in its usage:\n%s", bin, out)
	}
	cmds := map[string]bool{}
	for _, line := range strings.Split(list, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		cmds[strings.Fields(line)[0]] = true
	}
	if len(cmds) < 3 {
		t.Fatalf("%s: commands %v", bin, cmds)
	}
	return cmds
}

// TestDocumentedCommands checks that every `meshgate X` and `meshgate-dev X`
// the README, BENCHMARKS.md, deploy/README.md, docs/ and the examples/
// headers tell a user to run names a command the binary has (only
// docs/tools.md's old → new table names old commands). A page once said
// `bin/meshgate call mgp`, which moved to meshgate-dev.
func TestDocumentedCommands(t *testing.T) {
	known := map[string]map[string]bool{
		"meshgate":     subcommands(t, harness.MeshgateBin(t)),
		"meshgate-dev": subcommands(t, harness.MeshgateDevBin(t)),
	}
	root := harness.RepoRoot()
	files := []string{"README.md", "BENCHMARKS.md", "deploy/README.md"}
	for _, pat := range []string{"docs/*.md", "examples/*.yaml", "docker/compose/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			files = append(files, strings.TrimPrefix(f, root+"/"))
		}
	}
	// A command: after a backtick, `&& ` or `$(`, or at the start of a line
	// as bin/meshgate (after a YAML comment's #), or at the start of a line
	// of a fenced code block (after a shell prompt); followed by a word and
	// then a space, a backtick or the end of the line (not `meshgate
	// grpc-go/1.2`, not "builds bin/meshgate and ..."); environment
	// assignments may come first.
	const word = ` ([a-z][a-z-]*)(?:[ \t` + "`" + `]|$)`
	inline := regexp.MustCompile("(?m)(?:`|&& |\\$\\()(?:bin/)?(meshgate(?:-dev)?)" + word)
	const env = `(?:[A-Z_][A-Z0-9_]*=\S* )*` // MESHGATE_KEY=... bin/meshgate-dev call
	lineStart := regexp.MustCompile(`(?m)^[ \t]*(?:#[ \t]*)?` + env + `bin/(meshgate(?:-dev)?)` + word)
	block := regexp.MustCompile(`(?m)^[ \t]*(?:\$ )?` + env + `(?:bin/)?(meshgate(?:-dev)?)` + word)
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if f == "docs/tools.md" {
			// The old → new table names the commands that moved.
			if i := strings.Index(text, "## Command names (old → new)"); i >= 0 {
				j := strings.Index(text[i+1:], "\n## ")
				text = text[:i] + text[i+1+j:]
			}
		}
		matches := append(inline.FindAllStringSubmatch(text, -1), lineStart.FindAllStringSubmatch(text, -1)...)
		for i, part := range strings.Split(text, "```") {
			if i%2 == 1 { // inside a fenced block
				matches = append(matches, block.FindAllStringSubmatch(part, -1)...)
			}
		}
		bad := map[string]bool{}
		for _, m := range matches {
			checked++
			if !known[m[1]][m[2]] && !bad[m[1]+" "+m[2]] {
				bad[m[1]+" "+m[2]] = true
				t.Errorf("%s: `%s %s`: %s has no command %q", f, m[1], m[2], m[1], m[2])
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d documented commands found", checked)
	}
	t.Logf("%d documented commands checked in %d files", checked, len(files))
}
