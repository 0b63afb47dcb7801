package config

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestCheckHelpers pins what each shared field check accepts and the
// field-named error it adds otherwise.
func TestCheckHelpers(t *testing.T) {
	var e errs
	seen := map[string]bool{}
	ok := []bool{
		checkName(&e, "a[0].name", "x", "thing", seen),
		checkRange(&e, "r", 5, 1, 10),
		checkRange(&e, "rd", 2*time.Second, time.Second, time.Minute),
		checkMin(&e, "m", 1.5, 1),
		checkNotNegative(&e, "n", 0),
		checkOneOf(&e, "o", "b", "a", "b"),
	}
	for i, v := range ok {
		if !v {
			t.Fatalf("check %d rejected a good value: %v", i, e)
		}
	}
	if len(e) != 0 {
		t.Fatalf("good values added errors: %v", e)
	}
	bad := []struct {
		pass bool
		want string
	}{
		{checkName(&e, "a[1].name", "x", "thing", seen), `a[1].name: duplicate thing "x"`},
		{checkName(&e, "a[2].name", "", "thing", seen), "a[2].name: required"},
		{checkRange(&e, "r", 11, 1, 10), "r: must be in [1, 10], got 11"},
		{checkRange(&e, "nan", math.NaN(), 0, 1), "nan: must be in [0, 1], got NaN"},
		{checkMin(&e, "m", time.Microsecond, time.Millisecond), "m: must be at least 1ms, got 1µs"},
		{checkNotNegative(&e, "n", -time.Second), "n: must not be negative, got -1s"},
		{checkOneOf(&e, "o", "c", "a", "b"), `o: must be one of a, b; got "c"`},
	}
	if len(e) != len(bad) {
		t.Fatalf("got %d errors, want %d: %v", len(e), len(bad), e)
	}
	for i, b := range bad {
		if b.pass {
			t.Errorf("check %d passed a bad value", i)
		}
		if !errors.Is(e[i], ErrInvalid) || !strings.HasSuffix(e[i].Error(), b.want) {
			t.Errorf("error %d = %q, want suffix %q", i, e[i], b.want)
		}
	}
}

func TestSetDefault(t *testing.T) {
	d, s := time.Duration(0), "set"
	setDefault(&d, time.Second)
	setDefault(&s, "default")
	if d != time.Second || s != "set" {
		t.Fatalf("setDefault: d=%v s=%q", d, s)
	}
}
