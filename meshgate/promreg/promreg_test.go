package promreg

import (
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
