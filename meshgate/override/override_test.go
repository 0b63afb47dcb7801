package override

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSetClearGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(reg)
	p := s.Pin("mgp-in/1001")
	if _, ok := p.Backend(); ok {
		t.Fatal("fresh pin set")
	}
	if err := s.Set("mgp-in/1001", "legacy", "incident 42"); err != nil {
		t.Fatal(err)
	}
	if b, ok := s.Pin("mgp-in/1001").Backend(); !ok || b != "legacy" {
		t.Fatalf("pin %q %v", b, ok)
	}
	if b, _ := p.Backend(); b != "legacy" {
		t.Fatal("pin resolved before Set does not see it")
	}
	if err := s.Set("mgp-in/1001", "new", ""); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP meshgate_migrate_override 1 while an operator override sends every request of route to backend.
# TYPE meshgate_migrate_override gauge
meshgate_migrate_override{backend="new",route="mgp-in/1001"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshgate_migrate_override"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Clear("mgp-in/1001"); !ok || err != nil {
		t.Fatalf("clear %v %v", ok, err)
	}
	if _, ok := p.Backend(); ok {
		t.Fatal("cleared pin still set")
	}
	if n := testutil.CollectAndCount(s.gauge); n != 0 {
		t.Fatalf("%d gauge series after clear", n)
	}
	if ok, _ := s.Clear("mgp-in/1001"); ok {
		t.Fatal("second clear reported an override")
	}
	var nilPin *Pin
	if _, ok := nilPin.Backend(); ok {
		t.Fatal("nil pin set")
	}
}

// Overrides written to the state file come back in a new process (a new
// Store reading the same file).
func TestStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s := New(nil)
	if err := s.Set("a", "legacy", "before file"); err != nil {
		t.Fatal(err)
	}
	if err := s.UseFile(path); err != nil { // absent: written from memory
		t.Fatal(err)
	}
	if err := s.Set("b", "new", ""); err != nil {
		t.Fatal(err)
	}
	s2 := New(nil)
	if err := s2.UseFile(path); err != nil {
		t.Fatal(err)
	}
	l := s2.List()
	if len(l) != 2 || l[0].Route != "a" || l[0].Backend != "legacy" || l[1].Backend != "new" {
		t.Fatalf("restored %+v", l)
	}
	if _, err := s2.Clear("a"); err != nil {
		t.Fatal(err)
	}
	s3 := New(nil)
	if err := s3.UseFile(path); err != nil {
		t.Fatal(err)
	}
	if l := s3.List(); len(l) != 1 || l[0].Route != "b" {
		t.Fatalf("after clear %+v", l)
	}
	if err := os.WriteFile(path, []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := New(nil).UseFile(path); err == nil {
		t.Fatal("corrupt state file accepted")
	}
}

func TestPinAllocs(t *testing.T) {
	s := New(nil)
	p := s.Pin("r")
	_ = s.Set("r", "x", "")
	if a := testing.AllocsPerRun(1000, func() { _, _ = p.Backend() }); a != 0 {
		t.Fatalf("Backend allocates %v", a)
	}
}
