package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdopt(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "x"}
	a, err := Adopt(reg, prometheus.NewCounterVec(opts, []string{"l"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Adopt(reg, prometheus.NewCounterVec(opts, []string{"l"}))
	if err != nil || b != a {
		t.Fatalf("an identical collector was not adopted: %v (same: %v)", err, b == a)
	}
	// Same name, other labels: a real conflict.
	c := prometheus.NewCounterVec(opts, []string{"other"})
	if got, err := Adopt(reg, c); err == nil || got != c {
		t.Fatalf("a conflicting collector was accepted: %v", err)
	}
	// Same descriptor, other Go type: not adoptable as that type.
	if _, err := Adopt(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts(opts), []string{"l"})); err == nil {
		t.Fatal("a collector of another type was adopted")
	}
	if d := prometheus.NewCounter(prometheus.CounterOpts{Name: "z", Help: "z"}); func() bool { got, err := Adopt(nil, d); return got != d || err != nil }() {
		t.Fatal("nil registry")
	}
}

// TestPerRegisterer: one value per registry (nil included), made once;
// a failed make is not kept.
func TestPerRegisterer(t *testing.T) {
	var p PerRegisterer[*int]
	made := 0
	mk := func() (*int, error) { made++; v := made; return &v, nil }
	a, b := prometheus.NewRegistry(), prometheus.NewRegistry()
	a1, _ := p.Get(a, mk)
	a2, _ := p.Get(a, mk)
	b1, _ := p.Get(b, mk)
	n1, _ := p.Get(nil, mk)
	n2, _ := p.Get(nil, mk)
	if a1 != a2 || n1 != n2 || a1 == b1 || a1 == n1 || made != 3 {
		t.Fatalf("made %d values, want one per registry", made)
	}
	c := prometheus.NewRegistry()
	if _, err := p.Get(c, func() (*int, error) { return nil, errors.New("no") }); err == nil {
		t.Fatal("make's error not returned")
	}
	if v, err := p.Get(c, mk); err != nil || v == nil {
		t.Fatalf("after a failed make: %v %v", v, err)
	}
}

// TestAdoptAll: every collector adopted in place; a conflict stops it.
func TestAdoptAll(t *testing.T) {
	reg := prometheus.NewRegistry()
	mk := func() (*prometheus.CounterVec, *prometheus.CounterVec) {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "a_total", Help: "a"}, []string{"l"}),
			prometheus.NewCounterVec(prometheus.CounterOpts{Name: "b_total", Help: "b"}, []string{"l"})
	}
	a1, b1 := mk()
	a2, b2 := mk()
	if err := AdoptAll(reg, &a1, &b1); err != nil {
		t.Fatal(err)
	}
	if err := AdoptAll(reg, &a2, &b2); err != nil || a2 != a1 || b2 != b1 {
		t.Fatalf("second set not adopted: %v", err)
	}
	bad := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "a_total", Help: "a"}, []string{"other"})
	if err := AdoptAll(reg, &bad); err == nil {
		t.Fatal("a conflicting collector was accepted")
	}
}
