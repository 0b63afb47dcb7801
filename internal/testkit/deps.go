package testkit

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// Deps runs `go list -deps` on pkgs (paths as the go tool takes them,
// relative to the test's directory; test files excluded) and returns the
// import path of every package they link. The test fails when the go tool
// is missing, reports dependency errors, or lists implausibly few packages.
func Deps(tb testing.TB, pkgs ...string) []string {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("go tool not found: %v", err)
	}
	args := append([]string{"list", "-deps", "-f", `{{.ImportPath}}{{if .DepsErrors}} DEPS-ERROR{{end}}`}, pkgs...)
	out, err := exec.Command(goBin, args...).Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		tb.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		if d == "DEPS-ERROR" {
			tb.Fatalf("go list reported dependency errors:\n%s", out)
		}
	}
	if len(deps) < 20 {
		tb.Fatalf("go list -deps output looks wrong (%d packages):\n%s", len(deps), out)
	}
	return deps
}
