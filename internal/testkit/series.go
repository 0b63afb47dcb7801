package testkit

import (
	"maps"
	"slices"
	"testing"
)

// CompareSeries compares two exports of the same metrics keyed by series
// (what grpc-go records against what MeshGate's own transport records):
// a series in one and not the other, or one eq finds unequal, is a test
// error naming it (show formats a point). It returns every series key,
// sorted.
func CompareSeries[P any](t testing.TB, want, got map[string]P, eq func(w, g P) bool, show func(P) string) []string {
	t.Helper()
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := slices.Sorted(maps.Keys(keys))
	for _, k := range sorted {
		w, okW := want[k]
		g, okG := got[k]
		switch {
		case !okG:
			t.Errorf("direct lacks %s", k)
		case !okW:
			t.Errorf("direct records %s, grpc-go does not", k)
		case !eq(w, g):
			t.Errorf("%s:\n direct  %s\n grpc-go %s", k, show(g), show(w))
		}
	}
	return sorted
}
