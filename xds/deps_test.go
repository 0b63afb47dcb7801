package xds

import (
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/testkit"
)

// TestXDSDoesNotImportConfig runs `go list -deps` on package xds and its
// model (test files excluded) and fails if either links MeshGate's config
// package or anything else of the data path: the translator reads only the
// model (xds/model), which the config package builds.
func TestXDSDoesNotImportConfig(t *testing.T) {
	deps := testkit.Deps(t, ".", "./model")
	var self, mdl bool
	for _, d := range deps {
		switch {
		case d == "github.com/meshgate/meshgate/xds":
			self = true
		case d == "github.com/meshgate/meshgate/xds/model":
			mdl = true
		case strings.HasPrefix(d, "github.com/meshgate/meshgate/meshgate/"):
			t.Errorf("package xds links %s; the translator must read only xds/model", d)
		}
	}
	if !self || !mdl {
		t.Fatalf("go list -deps does not list xds and xds/model: %v", deps)
	}
}
