package upstream

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// Upstream is what a route targets, whatever the upstream's protocol: a
// *PrivatePool (protocol "private") or a *grpcpool.Pool (protocol "grpc").
//
// Both follow one retire policy: a call brackets itself with Acquire and
// Release; Retire marks the upstream as no longer routed to and it closes
// after its last in-flight call (Done is closed then); Close closes at once.
// RetireWithin adds an upper bound (defaults.drain_timeout).
type Upstream interface {
	Name() string
	// Acquire takes a reference for one call; false once retired (the
	// caller re-reads its routing table).
	Acquire() bool
	// Release drops a reference taken by Acquire.
	Release()
	// Retire closes the upstream after its last call.
	Retire()
	// Done is closed once the upstream has closed.
	Done() <-chan struct{}
	// Close closes now, failing calls in flight.
	Close() error
}

// Both pool kinds are Upstreams.
var (
	_ Upstream = (*PrivatePool)(nil)
	_ Upstream = (*grpcpool.Pool)(nil)
)

// RetireWithin retires u: it closes after its last in-flight call, and at
// the latest maxWait later (calls still running then fail). maxWait <= 0
// waits for the last call however long it takes.
func RetireWithin(u Upstream, maxWait time.Duration) {
	u.Retire()
	if maxWait <= 0 {
		return
	}
	go func() {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		select {
		case <-u.Done():
		case <-t.C:
			_ = u.Close()
		}
	}()
}

// Set resolves route upstream names to the pools of one generation, of
// either protocol. Built once per (re)load and not modified afterwards.
type Set struct {
	Private map[string]*PrivatePool
	GRPC    map[string]*grpcpool.Pool
}

// Protocol returns the protocol of the named upstream ("" when unknown).
func (s Set) Protocol(name string) string {
	if s.Private[name] != nil {
		return config.ProtoPrivate
	}
	if s.GRPC[name] != nil {
		return config.ProtoGRPC
	}
	return ""
}

// Status maps the transport-level failure of a private pool call (not a
// reply's result) to a gRPC status error, the one vocabulary both
// directions use (a private listener turns it into a result with
// mapping.ReplyFrame). ctx is the call's context.
func Status(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "upstream did not answer in time")
	case errors.Is(err, context.Canceled):
		if ctx.Err() != nil {
			return status.Error(codes.Canceled, "call canceled")
		}
		return status.Error(codes.Unavailable, "upstream unavailable")
	case errors.Is(err, ErrOverloaded), errors.Is(err, privconn.ErrTooManyInFlight):
		return status.Error(codes.ResourceExhausted, "upstream overloaded")
	case errors.Is(err, codec.ErrInvalidFrame):
		return status.Error(codes.InvalidArgument, "request cannot be encoded as a frame")
	case errors.Is(err, ErrNoHealthy), errors.Is(err, ErrPoolClosed), errors.Is(err, privconn.ErrClosed):
		return status.Error(codes.Unavailable, "upstream unavailable")
	}
	return status.Error(codes.Internal, "upstream call failed")
}
