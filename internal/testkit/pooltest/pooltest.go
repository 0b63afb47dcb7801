// Package pooltest builds real upstream pools for unit tests: a private
// pool dialed to live backends and waited on until healthy, a gRPC pool. It is apart
// from testkit because it imports meshgate/upstream (which imports
// meshgate/grpcpool, whose own tests use testkit). Import it only from
// _test.go files.
package pooltest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// Private is an MGP/1 private pool for u as given (call u.WithDefaults()
// for the defaults; metrics on reg when not nil), closed at cleanup, once
// healthy endpoints are connected (within 5s; 0 does not wait).
func Private(tb testing.TB, u config.Upstream, reg prometheus.Registerer, healthy int, opts ...upstream.Option) *upstream.PrivatePool {
	tb.Helper()
	p, err := upstream.NewPrivatePool(u, mgp.New(0), nil, reg, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitHealthy(ctx, healthy); err != nil {
		tb.Fatal(err)
	}
	return p
}

// FastBackoff is the reconnect backoff tests use (10ms..100ms).
func FastBackoff() upstream.Option {
	return upstream.WithBackoff(10*time.Millisecond, 100*time.Millisecond)
}

// GRPC is a gRPC pool for u as given, closed at cleanup.
func GRPC(tb testing.TB, u config.Upstream, o grpcpool.Options) *grpcpool.Pool {
	tb.Helper()
	p, err := grpcpool.New(u, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}
