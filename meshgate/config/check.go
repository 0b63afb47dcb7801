package config

import (
	"cmp"
	"strings"
)

// Field checks shared by every section's validation. Each one adds an error
// naming field (its YAML path) when the value fails, and reports whether it
// passed, so a caller can skip checks that depend on it.

// checkName requires a list entry's name and that no earlier entry in seen
// took it ("duplicate <what> %q"); it records name in seen.
func checkName(e *errs, field, name, what string, seen map[string]bool) bool {
	ok := true
	switch {
	case name == "":
		e.add(field, "required")
		ok = false
	case seen[name]:
		e.add(field, "duplicate %s %q", what, name)
		ok = false
	}
	seen[name] = true
	return ok
}

// checkRange requires lo <= v <= hi.
func checkRange[T cmp.Ordered](e *errs, field string, v, lo, hi T) bool {
	if cmp.Less(v, lo) || cmp.Less(hi, v) { // NaN is less than lo
		e.add(field, "must be in [%v, %v], got %v", lo, hi, v)
		return false
	}
	return true
}

// checkMin requires v >= lo.
func checkMin[T cmp.Ordered](e *errs, field string, v, lo T) bool {
	if cmp.Less(v, lo) {
		e.add(field, "must be at least %v, got %v", lo, v)
		return false
	}
	return true
}

// checkNotNegative requires v >= 0 (0 usually means "the default").
func checkNotNegative[T cmp.Ordered](e *errs, field string, v T) bool {
	var zero T
	if cmp.Less(v, zero) {
		e.add(field, "must not be negative, got %v", v)
		return false
	}
	return true
}

// checkListed requires a list of n entries to have at least one (what
// names an entry).
func checkListed(e *errs, field string, n int, what string) bool {
	if n == 0 {
		e.add(field, "at least one %s is required", what)
		return false
	}
	return true
}

// checkUnused requires a list of n entries that does not apply here to
// be empty; why says what applies instead.
func checkUnused(e *errs, field string, n int, why string) bool {
	if n > 0 {
		e.add(field, "%s", why)
		return false
	}
	return true
}

// checkOneOf requires v to be one of allowed.
func checkOneOf(e *errs, field, v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	e.add(field, "must be one of %s; got %q", strings.Join(allowed, ", "), v)
	return false
}

// upstreamsByName indexes c.Upstreams by name (the last one wins when a
// name repeats; Validate reports the repeat).
func (c *Config) upstreamsByName() map[string]*Upstream {
	ups := make(map[string]*Upstream, len(c.Upstreams))
	for i := range c.Upstreams {
		ups[c.Upstreams[i].Name] = &c.Upstreams[i]
	}
	return ups
}

// checkUpstreamRef requires a reference to a configured upstream and
// returns it (nil when missing or unknown).
func checkUpstreamRef(e *errs, field, name string, ups map[string]*Upstream) *Upstream {
	u := ups[name]
	switch {
	case name == "":
		e.add(field, "required")
	case u == nil:
		e.add(field, "unknown upstream %q", name)
	}
	return u
}

// checkTLSFiles requires a certificate, its key and a CA (caWhy says what
// the CA is for) in a TLS block that must be complete on its own.
func checkTLSFiles(e *errs, field string, t *TLS, caWhy string) {
	if t.CertFile == "" {
		e.add(field+".cert_file", "required")
	}
	if t.KeyFile == "" {
		e.add(field+".key_file", "required")
	}
	if t.CAFile == "" {
		e.add(field+".ca_file", "required%s", caWhy)
	}
}

// setDefault sets *v to d when *v is the zero value (unset).
func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}
