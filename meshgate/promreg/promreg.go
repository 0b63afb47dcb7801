// Package promreg registers Prometheus collectors the way every MeshGate
// package does: a collector identical to one already registered (another
// listener, pool or runtime generation made it on the same registry) is
// adopted instead of failing the registration.
package promreg

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Adopt registers c on reg and returns it; when an identical collector of
// the same type is already registered it returns that one instead. A nil
// reg returns c unregistered. Any other registration failure is returned
// with c.
func Adopt[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old, nil
		}
	}
	return c, fmt.Errorf("promreg: %w", err)
}

// AdoptAll is Adopt for each collector cs point to, in place; it stops at
// the first failure.
func AdoptAll[C prometheus.Collector](reg prometheus.Registerer, cs ...*C) error {
	for _, c := range cs {
		var err error
		if *c, err = Adopt(reg, *c); err != nil {
			return err
		}
	}
	return nil
}

// PerRegisterer keeps one T per Registerer: the metrics a package's pools,
// guards or generations share when they are made on the same registry
// (nil included). The zero value is ready to use.
type PerRegisterer[T any] struct {
	mu sync.Mutex
	m  map[prometheus.Registerer]T
}

// Get returns the T kept for reg, made by make (and kept only if it
// succeeds) the first time.
func (p *PerRegisterer[T]) Get(reg prometheus.Registerer, make func() (T, error)) (T, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.m[reg]; ok {
		return v, nil
	}
	v, err := make()
	if err != nil {
		return v, err
	}
	if p.m == nil {
		p.m = map[prometheus.Registerer]T{}
	}
	p.m[reg] = v
	return v, nil
}
