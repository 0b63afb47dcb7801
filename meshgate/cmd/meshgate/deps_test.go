package main

import (
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/testkit"
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
	deps := testkit.Deps(t, ".")
	var self bool
	for _, d := range deps {
		if d == "github.com/meshgate/meshgate/meshgate/cmd/meshgate" {
			self = true
		}
		for _, p := range toolPackages {
			if d == p || strings.HasPrefix(d, p+"/") {
				t.Errorf("the product binary links tool package %s; move its use to cmd/meshgate-dev", d)
			}
		}
	}
	if !self {
		t.Fatalf("go list -deps does not list the package itself: %v", deps)
	}
}
