package config

import (
	"errors"
	"strings"
	"testing"
)

// edit returns base with from replaced once by to; from must occur in
// base, so a stale fixture cannot turn a case into a no-op.
func edit(t testing.TB, base, from, to string) string {
	t.Helper()
	if !strings.Contains(base, from) {
		t.Fatalf("fixture lacks %q", from)
	}
	return strings.Replace(base, from, to, 1)
}

// mustParse parses y (relative files from dir), failing the test on error.
func mustParse(t testing.TB, y, dir string) *Config {
	t.Helper()
	c, err := Parse([]byte(y), dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantFieldError checks that Parse rejects y with an ErrInvalid error
// naming field followed by ":" (a field given with its message,
// "path: text", must appear as given).
func wantFieldError(t testing.TB, y, dir, field string) {
	t.Helper()
	_, err := Parse([]byte(y), dir)
	if err == nil {
		t.Fatal("accepted")
	}
	want := field
	if !strings.Contains(want, ": ") {
		want += ":"
	}
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, field)
	}
}
