package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRunRequiresConfig: the product binary has no built-in demo config:
// `meshgate run` and `meshgate validate` without -c fail at once with an
// error pointing at the demo in meshgate-dev, and start nothing.
func TestRunRequiresConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for name, cmd := range map[string]func(context.Context, []string) error{"run": runCmd, "validate": validateCmd} {
		start := time.Now()
		err := cmd(ctx, nil)
		if !errors.Is(err, errNoConfig) {
			t.Fatalf("%s without -c: %v, want errNoConfig", name, err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("%s without -c ran for %v before failing", name, time.Since(start))
		}
		for _, want := range []string{"-c", "make run", "meshgate-dev demo"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not mention %q", name, err, want)
			}
		}
	}
}
