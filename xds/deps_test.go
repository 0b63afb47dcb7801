package xds

import (
	"os/exec"
	"strings"
	"testing"
)

// TestXDSDoesNotImportConfig runs `go list -deps` on package xds and its
// model (test files excluded) and fails if either links MeshGate's config
// package or anything else of the data path: the translator reads only the
// model (xds/model), which the config package builds.
func TestXDSDoesNotImportConfig(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}}{{if .DepsErrors}} DEPS-ERROR{{end}}`, ".", "./model").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	deps := strings.Fields(string(out))
	var self, mdl bool
	for _, d := range deps {
		switch {
		case d == "DEPS-ERROR":
			t.Fatalf("go list reported dependency errors:\n%s", out)
		case d == "github.com/meshgate/meshgate/xds":
			self = true
		case d == "github.com/meshgate/meshgate/xds/model":
			mdl = true
		case strings.HasPrefix(d, "github.com/meshgate/meshgate/meshgate/"):
			t.Errorf("package xds links %s; the translator must read only xds/model", d)
		}
	}
	if !self || !mdl || len(deps) < 20 {
		t.Fatalf("go list -deps output looks wrong (%d packages):\n%s", len(deps), out)
	}
}
