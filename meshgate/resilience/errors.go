package resilience

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Rejected is a request refused before it reached any endpoint because a
// cap was reached; callers answer result 6 / RESOURCE_EXHAUSTED with the
// reason. The values are shared sentinels (compare with errors.Is).
type Rejected struct {
	Reason string
	status error // RESOURCE_EXHAUSTED "overloaded: reason", built once
}

func rejected(reason string) *Rejected {
	return &Rejected{Reason: reason, status: status.Error(codes.ResourceExhausted, "overloaded: "+reason)}
}

func (r *Rejected) Error() string { return "overloaded: " + r.Reason }

// Rejections.
var (
	ErrMaxRequests      = rejected("max_requests")          // circuit_breaker.max_requests
	ErrMaxPending       = rejected("max_pending")           // circuit_breaker.max_pending
	ErrConcurrencyLimit = rejected("concurrency_limit")     // adaptive limit reached, no waiting
	ErrQueueTimeout     = rejected("queue_timeout")         // waited max_wait for a slot
	ErrEndpointLimit    = rejected("max_endpoint_requests") // every eligible endpoint at its cap
	ErrOverload         = rejected("listener_overload")     // listeners[i].overload.max_in_flight
	ErrSwitchedOff      = rejected("switched_off")          // a service switch is off
)

// rejections lists every Rejected, for metrics.
var rejections = []*Rejected{ErrMaxRequests, ErrMaxPending, ErrConcurrencyLimit, ErrQueueTimeout, ErrEndpointLimit, ErrOverload, ErrSwitchedOff}

var (
	// ErrDeadline: the request's deadline passed, or less than
	// min_remaining was left, before it could be sent (result 5 /
	// DEADLINE_EXCEEDED). It was never sent upstream.
	ErrDeadline = errors.New("deadline exceeded before sending upstream")
	// ErrNoEndpoint: no endpoint is available (result 7 / UNAVAILABLE).
	ErrNoEndpoint = errors.New("no available endpoint")
)

// Status maps an error of Do (nothing was sent) to the gRPC status a
// listener answers with (a private listener turns it into result 5, 6 or
// 7 by PROTOCOL.md's table). Other errors are returned unchanged.
func Status(err error) error {
	var r *Rejected
	switch {
	case errors.As(err, &r):
		return r.status
	case errors.Is(err, ErrDeadline):
		return errDeadlineStatus
	case errors.Is(err, ErrNoEndpoint):
		return errNoEndpointStatus
	}
	return err
}

var (
	errDeadlineStatus   = status.Error(codes.DeadlineExceeded, "deadline exceeded before sending upstream")
	errNoEndpointStatus = status.Error(codes.Unavailable, "no available endpoint")
)
