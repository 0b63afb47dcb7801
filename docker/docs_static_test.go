package docker

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// userDocs are the files a new user reads commands from, relative to the
// repository root.
func userDocs(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../README.md", "../BENCHMARKS.md", "../deploy/README.md"}, docs...)
}

// makeTargets is what `make help` lists in the repository root.
func makeTargets(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("make not found")
		}
		t.Skip("make not found")
	}
	out, err := exec.Command("make", "-s", "-C", "..", "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	ansi := regexp.MustCompile(`\x1b\[[0-9;]*m`)
	var targets []string
	for _, line := range strings.Split(ansi.ReplaceAllString(string(out), ""), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			targets = append(targets, f[0])
		}
	}
	return targets
}

// TestDocumentedMakeTargets checks that every `make TARGET` the README and
// docs/ tell a user to run is a target `make help` lists, and so is every
// name in the README's "Make targets (`make help`): ..." sentence. `make
// help` once left out every target with a digit in its name (e2e,
// istio-e2e), which the README names.
func TestDocumentedMakeTargets(t *testing.T) {
	targets := makeTargets(t)
	if !slices.Contains(targets, "help") || !slices.Contains(targets, "build") {
		t.Fatalf("make help lists %q: not the target list", targets)
	}
	// `make X` in backticks anywhere; a line starting with make X only in
	// a fenced code block (prose may wrap onto "make the ...").
	quoted := regexp.MustCompile("`make ([a-zA-Z0-9][a-zA-Z0-9_-]*)")
	line := regexp.MustCompile(`(?m)^[ \t]*make ([a-zA-Z0-9][a-zA-Z0-9_-]*)`)
	fence := regexp.MustCompile("(?ms)^[ \t]*```[^\n]*\n(.*?)^[ \t]*```")
	checked := 0
	for _, f := range userDocs(t) {
		doc := string(readFile(t, f))
		ms := quoted.FindAllStringSubmatch(doc, -1)
		for _, b := range fence.FindAllStringSubmatch(doc, -1) {
			ms = append(ms, line.FindAllStringSubmatch(b[1], -1)...)
		}
		for _, m := range ms {
			checked++
			if !slices.Contains(targets, m[1]) {
				t.Errorf("%s says `make %s`; make help lists %q", f, m[1], targets)
			}
		}
	}
	readme := string(readFile(t, "../README.md"))
	_, list, ok := strings.Cut(readme, "Make targets (`make help`):")
	if !ok {
		t.Fatal("README has no \"Make targets (`make help`):\" sentence")
	}
	list, _, _ = strings.Cut(list, ".\n")
	for _, m := range regexp.MustCompile("`([a-zA-Z0-9_-]+)`").FindAllStringSubmatch(list, -1) {
		checked++
		if !slices.Contains(targets, m[1]) {
			t.Errorf("README's make target list names %q; make help lists %q", m[1], targets)
		}
	}
	if checked < 10 {
		t.Fatalf("only %d make commands found in the docs", checked)
	}
}
