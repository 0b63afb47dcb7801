// Package promreg registers Prometheus collectors the way every MeshGate
// package does: a collector identical to one already registered (another
// listener, pool or runtime generation made it on the same registry) is
// adopted instead of failing the registration.
package promreg

import (
	"errors"
	"fmt"

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
