package resilience

// Outcome classifies how one attempt on one endpoint ended, independent of
// protocol. The caller maps its reply or error to an Outcome.
type Outcome uint8

// Outcomes.
const (
	// Success: the backend answered (application-level errors included:
	// the endpoint is healthy even if the user's request was refused).
	Success Outcome = iota
	// ConnectFailure: the request never reached the backend or the
	// connection was lost before the reply (safe to retry).
	ConnectFailure
	// Unavailable: result 7 / UNAVAILABLE from the backend.
	Unavailable
	// Exhausted: result 6 / RESOURCE_EXHAUSTED from the backend (overload).
	Exhausted
	// Timeout: the attempt's deadline passed without a reply.
	Timeout
	// Failure: another infrastructure failure (INTERNAL, bad reply...).
	Failure
	// Cancelled: the caller gave up (or a hedge lost); not counted.
	Cancelled
	// NotSent: the request provably never left MeshGate (no connection, a
	// write that failed before any byte). Counted like ConnectFailure, and
	// retried on another endpoint on any route (up to 3 attempts), since
	// the backend cannot have acted on it.
	NotSent
)

var outcomeNames = [...]string{"success", "connect_failure", "unavailable", "resource_exhausted", "timeout", "failure", "cancelled", "not_sent"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// failed reports whether o counts against the endpoint's health.
func (o Outcome) failed() bool { return o != Success && o != Cancelled }

// RetryOn is a set of retryable outcomes.
type RetryOn uint8

// Bit returns the RetryOn bit of o.
func (o Outcome) bit() RetryOn { return 1 << o }

// Retryable outcome sets.
const (
	RetryConnectFailure    = RetryOn(1 << ConnectFailure)
	RetryUnavailable       = RetryOn(1 << Unavailable)
	RetryResourceExhausted = RetryOn(1 << Exhausted)
)
