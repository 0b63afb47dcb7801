package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// errNoProduct is returned when the product binary cannot be found.
var errNoProduct = errors.New("cannot find the meshgate binary: build it (make build) or pass -meshgate PATH / set $MESHGATE_BIN")

// findMeshgate returns the product binary `meshgate`: explicit (a -meshgate
// flag) if set, else $MESHGATE_BIN, else `meshgate` next to this executable,
// else `meshgate` on PATH.
func findMeshgate(explicit string) (string, error) {
	check := func(p, from string) (string, error) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("%s %q: %w", from, p, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return "", fmt.Errorf("%s %q: %w", from, p, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s %q: not an executable file", from, p)
		}
		return abs, nil
	}
	if explicit != "" {
		return check(explicit, "-meshgate")
	}
	if p := os.Getenv("MESHGATE_BIN"); p != "" {
		return check(p, "$MESHGATE_BIN")
	}
	if self, err := os.Executable(); err == nil {
		if p, err := check(filepath.Join(filepath.Dir(self), "meshgate"), "beside meshgate-dev"); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("meshgate"); err == nil {
		return check(p, "PATH")
	}
	return "", errNoProduct
}
