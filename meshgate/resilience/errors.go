package resilience

import "errors"

// Rejected is a request refused before it reached any endpoint because a
// cap was reached; callers answer result 6 / RESOURCE_EXHAUSTED with the
// reason. The values are shared sentinels (compare with errors.Is).
type Rejected struct{ Reason string }

func (r *Rejected) Error() string { return "overloaded: " + r.Reason }

// Rejections.
var (
	ErrMaxRequests      = &Rejected{"max_requests"}          // circuit_breaker.max_requests
	ErrMaxPending       = &Rejected{"max_pending"}           // circuit_breaker.max_pending
	ErrConcurrencyLimit = &Rejected{"concurrency_limit"}     // adaptive limit reached, no waiting
	ErrQueueTimeout     = &Rejected{"queue_timeout"}         // waited max_wait for a slot
	ErrEndpointLimit    = &Rejected{"max_endpoint_requests"} // every eligible endpoint at its cap
	ErrOverload         = &Rejected{"listener_overload"}     // listeners[i].overload.max_in_flight
	ErrSwitchedOff      = &Rejected{"switched_off"}          // a service switch is off
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
