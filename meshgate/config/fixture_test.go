package config

import (
	"errors"
	"strings"
	"testing"
)

// fieldCase is a bad config: a base fixture with from replaced (once) by
// to, rejected with an error naming field (its YAML path).
type fieldCase struct{ from, to, field string }

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

// wantFieldErrors checks every case against base: Parse rejects it with
// an ErrInvalid error naming the field followed by ":" (a field given with
// its message, "path: text", must appear as given).
func wantFieldErrors(t *testing.T, base, dir string, cases map[string]fieldCase) {
	t.Helper()
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(edit(t, base, c.from, c.to)), dir)
			if err == nil {
				t.Fatal("accepted")
			}
			want := c.field
			if !strings.Contains(want, ": ") {
				want += ":"
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %s", err, c.field)
			}
		})
	}
}
