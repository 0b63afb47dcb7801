package main

import (
	"os/exec"
	"strings"
	"testing"
)

// toolPackages are the developer-tool packages (and their former paths
// inside the product tree) the product binary must not link: simulators,
// demo service, bench suite, Envoy process helper, test PKI, unit-test
// scaffolding, and the tools binary itself. They belong to cmd/meshgate-dev.
var toolPackages = []string{
	"github.com/meshgate/meshgate/internal/sim",
	"github.com/meshgate/meshgate/internal/demo",
	"github.com/meshgate/meshgate/internal/bench",
	"github.com/meshgate/meshgate/internal/envoyproc",
	"github.com/meshgate/meshgate/internal/testpki",
	"github.com/meshgate/meshgate/internal/testkit",
	"github.com/meshgate/meshgate/cmd/meshgate-dev",
	"github.com/meshgate/meshgate/meshgate/legacy",
	"github.com/meshgate/meshgate/meshgate/demo",
	"github.com/meshgate/meshgate/meshgate/bench",
	"github.com/meshgate/meshgate/meshgate/envoyproc",
	"github.com/meshgate/meshgate/meshgate/certgen",
}

// TestProductLinksNoTools runs `go list -deps` on this package (the
// product binary, test files excluded) and fails if any tool package is
// linked in.
func TestProductLinksNoTools(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}}{{if .DepsErrors}} DEPS-ERROR{{end}}`, ".")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	deps := strings.Fields(string(out))
	var self bool
	for _, d := range deps {
		if d == "DEPS-ERROR" {
			t.Fatalf("go list reported dependency errors:\n%s", out)
		}
		if d == "github.com/meshgate/meshgate/meshgate/cmd/meshgate" {
			self = true
		}
		for _, p := range toolPackages {
			if d == p || strings.HasPrefix(d, p+"/") {
				t.Errorf("the product binary links tool package %s; move its use to cmd/meshgate-dev", d)
			}
		}
	}
	if !self || len(deps) < 20 {
		t.Fatalf("go list -deps output looks wrong (%d packages):\n%s", len(deps), out)
	}
}
