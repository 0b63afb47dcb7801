package config

import (
	"fmt"
	"time"
)

// Default resilience settings (see docs/resilience.md). Everything that
// protects a backend is on by default except the adaptive concurrency
// limiter, which is opt-in.
const (
	DefaultLatencyDecay          = 2 * time.Second
	DefaultSlowStart             = 10 * time.Second
	DefaultMinWeightPercent      = 1
	DefaultConsecutiveFailures   = 5
	DefaultFailureRatePercent    = 50
	DefaultFailureRateMinReqs    = 20
	DefaultOutlierInterval       = time.Second
	DefaultBaseEjectionTime      = 5 * time.Second
	DefaultMaxEjectionTime       = 300 * time.Second
	DefaultMaxEjectionPercent    = 50
	DefaultRetryBudgetPercent    = 20
	DefaultRetryMinConcurrency   = 3
	DefaultMaxAttempts           = 2
	DefaultMaxPending            = 1024
	DefaultMaxRequests           = 1024
	DefaultConcurrencyMinLimit   = 4
	DefaultConcurrencyMaxLimit   = 1000
	DefaultConcurrencyInitial    = 20
	DefaultConcurrencyTolerance  = 1.5
	DefaultConcurrencyWindow     = 100 * time.Millisecond
	DefaultConcurrencyLongWindow = 600
	DefaultCoreReservePercent    = 10
)

// Resilience is an upstream's protection settings:
// upstreams[i].resilience.
type Resilience struct {
	// AdaptiveWeights makes each endpoint's share follow its recent
	// success rate and latency.
	AdaptiveWeights AdaptiveWeights `yaml:"adaptive_weights,omitempty" json:"adaptive_weights"`
	// OutlierDetection ejects endpoints that fail.
	OutlierDetection OutlierDetection `yaml:"outlier_detection,omitempty" json:"outlier_detection"`
	// RetryBudget bounds retries and hedges to a share of live requests.
	RetryBudget RetryBudget `yaml:"retry_budget,omitempty" json:"retry_budget"`
	// CircuitBreaker caps pending and in-flight requests.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker,omitempty" json:"circuit_breaker"`
	// AdaptiveConcurrency is a gradient concurrency limiter (opt-in).
	AdaptiveConcurrency AdaptiveConcurrency `yaml:"adaptive_concurrency,omitempty" json:"adaptive_concurrency"`
	// MinRemaining: a request with less deadline left than this is not
	// sent upstream (it fails with DEADLINE_EXCEEDED at once). A request
	// whose deadline already passed is never sent, whatever this says.
	MinRemaining time.Duration `yaml:"min_remaining,omitempty" json:"min_remaining,omitempty"`
}

// AdaptiveWeights: upstreams[i].resilience.adaptive_weights.
type AdaptiveWeights struct {
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// Decay is the time constant of the latency and success-rate EWMAs
	// (default 2s): a change shows in the weights within a few Decays.
	Decay time.Duration `yaml:"decay,omitempty" json:"decay,omitempty"`
	// SlowStart ramps an endpoint's weight linearly from min_weight_percent
	// to full after it comes back from ejection (default 10s; 0 after
	// defaults never; set 1ms to effectively disable).
	SlowStart time.Duration `yaml:"slow_start,omitempty" json:"slow_start,omitempty"`
	// MinWeightPercent is the floor of an endpoint's effective weight, in
	// percent of its base weight, so a degraded endpoint keeps being
	// sampled and its recovery is seen (default 1).
	MinWeightPercent float64 `yaml:"min_weight_percent,omitempty" json:"min_weight_percent,omitempty"`
}

// OutlierDetection: upstreams[i].resilience.outlier_detection.
type OutlierDetection struct {
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// ConsecutiveFailures ejects an endpoint after this many failures in a
	// row (default 5).
	ConsecutiveFailures int `yaml:"consecutive_failures,omitempty" json:"consecutive_failures,omitempty"`
	// FailureRatePercent ejects an endpoint whose failure rate over one
	// Interval is at least this (default 50), once it has served
	// FailureRateMinRequests in the interval (default 20).
	FailureRatePercent     int `yaml:"failure_rate_percent,omitempty" json:"failure_rate_percent,omitempty"`
	FailureRateMinRequests int `yaml:"failure_rate_min_requests,omitempty" json:"failure_rate_min_requests,omitempty"`
	// Interval is the failure-rate window (default 1s).
	Interval time.Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// BaseEjectionTime × (number of ejections so far) is how long an
	// ejection lasts (default 5s), capped at MaxEjectionTime (default 300s).
	BaseEjectionTime time.Duration `yaml:"base_ejection_time,omitempty" json:"base_ejection_time,omitempty"`
	MaxEjectionTime  time.Duration `yaml:"max_ejection_time,omitempty" json:"max_ejection_time,omitempty"`
	// MaxEjectionPercent caps the share of endpoints ejected at once
	// (default 50); at least one endpoint may always be ejected when the
	// upstream has two or more.
	MaxEjectionPercent int `yaml:"max_ejection_percent,omitempty" json:"max_ejection_percent,omitempty"`
}

// RetryBudget: upstreams[i].resilience.retry_budget. Retries plus hedges
// in flight may be at most max(MinConcurrency, BudgetPercent% of the
// requests in flight) — Envoy's retry budget.
type RetryBudget struct {
	BudgetPercent  int `yaml:"budget_percent,omitempty" json:"budget_percent,omitempty"`   // default 20
	MinConcurrency int `yaml:"min_concurrency,omitempty" json:"min_concurrency,omitempty"` // default 3
}

// CircuitBreaker: upstreams[i].resilience.circuit_breaker. Past a cap a
// request fails at once with RESOURCE_EXHAUSTED (result 6).
type CircuitBreaker struct {
	// MaxPending caps requests waiting for a concurrency slot (default 1024).
	MaxPending int `yaml:"max_pending,omitempty" json:"max_pending,omitempty"`
	// MaxRequests caps requests in flight to the upstream (default 1024).
	MaxRequests int `yaml:"max_requests,omitempty" json:"max_requests,omitempty"`
	// MaxEndpointRequests caps requests in flight to one endpoint (0: no cap).
	MaxEndpointRequests int `yaml:"max_endpoint_requests,omitempty" json:"max_endpoint_requests,omitempty"`
	// MaxWait is how long a request may wait (as one of max_pending) for
	// a slot under max_requests or the adaptive limit; default 0: no
	// waiting, fail fast. A waiter whose deadline passes is never sent.
	MaxWait time.Duration `yaml:"max_wait,omitempty" json:"max_wait,omitempty"`
}

// AdaptiveConcurrency: upstreams[i].resilience.adaptive_concurrency, a
// Gradient2-style limiter (Netflix concurrency-limits).
type AdaptiveConcurrency struct {
	Enabled bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// MinLimit/MaxLimit bound the limit; InitialLimit is where it starts
	// (defaults 4, 1000, 20).
	MinLimit     int `yaml:"min_limit,omitempty" json:"min_limit,omitempty"`
	MaxLimit     int `yaml:"max_limit,omitempty" json:"max_limit,omitempty"`
	InitialLimit int `yaml:"initial_limit,omitempty" json:"initial_limit,omitempty"`
	// Tolerance is how much the short-term latency may exceed the
	// long-term one before the limit shrinks (default 1.5).
	Tolerance float64 `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// Window is how often the limit is recomputed from the latencies seen
	// (default 100ms); LongWindow is the long-term average's length in
	// windows (default 600).
	Window     time.Duration `yaml:"window,omitempty" json:"window,omitempty"`
	LongWindow int           `yaml:"long_window,omitempty" json:"long_window,omitempty"`
}

// RouteResilience is inlined into each route:
// listeners[i].routes[j].{idempotent,core,retry_on,max_attempts,hedge_delay,switch}.
type RouteResilience struct {
	// Idempotent routes may be retried and hedged.
	Idempotent bool `yaml:"idempotent,omitempty" json:"idempotent,omitempty"`
	// Core routes are shed last under overload.
	Core bool `yaml:"core,omitempty" json:"core,omitempty"`
	// RetryOn lists retryable outcomes: connect_failure, unavailable
	// (result 7), resource_exhausted (result 6). Default
	// [connect_failure, unavailable] on idempotent routes.
	RetryOn []string `yaml:"retry_on,omitempty" json:"retry_on,omitempty"`
	// MaxAttempts counts the first try (default 2 on idempotent routes).
	MaxAttempts int `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty"`
	// HedgeDelay, when set on an idempotent route, sends a second attempt
	// to another endpoint if the first has not answered after this long;
	// the first answer wins and the other is cancelled.
	HedgeDelay time.Duration `yaml:"hedge_delay,omitempty" json:"hedge_delay,omitempty"`
	// Switch names an entry of switches: while it is off the route answers
	// at once without calling the upstream.
	Switch string `yaml:"switch,omitempty" json:"switch,omitempty"`
}

// Retryable outcomes for RetryOn.
const (
	RetryOnConnectFailure    = "connect_failure"
	RetryOnUnavailable       = "unavailable"
	RetryOnResourceExhausted = "resource_exhausted"
)

// Switch is a service switch: switches[k]. Off routes answer with Reply
// (default result 6 / RESOURCE_EXHAUSTED "switched off") and never reach
// their upstream. The admin API can flip it at run time.
type Switch struct {
	Name  string      `yaml:"name" json:"name"`
	Off   bool        `yaml:"off,omitempty" json:"off,omitempty"`
	Reply SwitchReply `yaml:"reply,omitempty" json:"reply"`
}

// SwitchReply is the static answer of an off switch.
type SwitchReply struct {
	// Result is the MGP result (gRPC code by PROTOCOL.md's table); 0 means
	// a successful static reply with Body. Default 6.
	Result  *uint32 `yaml:"result,omitempty" json:"result,omitempty"`
	Message string  `yaml:"message,omitempty" json:"message,omitempty"`
	Body    string  `yaml:"body,omitempty" json:"body,omitempty"`
}

// Overload is a listener-wide admission cap: listeners[i].overload.
type Overload struct {
	// MaxInFlight caps the listener's requests in flight across all its
	// connections (0: no cap).
	MaxInFlight int `yaml:"max_in_flight,omitempty" json:"max_in_flight,omitempty"`
	// CoreReservePercent of MaxInFlight is kept for core routes and
	// heartbeats (default 10).
	CoreReservePercent int `yaml:"core_reserve_percent,omitempty" json:"core_reserve_percent,omitempty"`
}

func (c *Config) applyResilienceDefaults() {
	for i := range c.Upstreams {
		c.Upstreams[i].Resilience.ApplyDefaults()
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Overload != nil && l.Overload.CoreReservePercent == 0 {
			l.Overload.CoreReservePercent = DefaultCoreReservePercent
		}
		for j := range l.Routes {
			r := &l.Routes[j].RouteResilience
			if r.Idempotent && len(r.RetryOn) == 0 {
				r.RetryOn = []string{RetryOnConnectFailure, RetryOnUnavailable}
			}
			if r.Idempotent && r.MaxAttempts == 0 {
				r.MaxAttempts = DefaultMaxAttempts
			}
			setDefault(&r.MaxAttempts, 1)
		}
	}
	for i := range c.Switches {
		if c.Switches[i].Reply.Result == nil {
			six := uint32(6)
			c.Switches[i].Reply.Result = &six
		}
	}
}

// ApplyDefaults fills r's zero fields with the defaults (config loading
// does this; exported for code that builds a Resilience by hand).
func (r *Resilience) ApplyDefaults() {
	w := &r.AdaptiveWeights
	setDefault(&w.Decay, DefaultLatencyDecay)
	setDefault(&w.SlowStart, DefaultSlowStart)
	setDefault(&w.MinWeightPercent, DefaultMinWeightPercent)
	o := &r.OutlierDetection
	setDefault(&o.ConsecutiveFailures, DefaultConsecutiveFailures)
	setDefault(&o.FailureRatePercent, DefaultFailureRatePercent)
	setDefault(&o.FailureRateMinRequests, DefaultFailureRateMinReqs)
	setDefault(&o.Interval, DefaultOutlierInterval)
	setDefault(&o.BaseEjectionTime, DefaultBaseEjectionTime)
	setDefault(&o.MaxEjectionTime, DefaultMaxEjectionTime)
	setDefault(&o.MaxEjectionPercent, DefaultMaxEjectionPercent)
	b := &r.RetryBudget
	setDefault(&b.BudgetPercent, DefaultRetryBudgetPercent)
	setDefault(&b.MinConcurrency, DefaultRetryMinConcurrency)
	cb := &r.CircuitBreaker
	setDefault(&cb.MaxPending, DefaultMaxPending)
	setDefault(&cb.MaxRequests, DefaultMaxRequests)
	a := &r.AdaptiveConcurrency
	setDefault(&a.MinLimit, DefaultConcurrencyMinLimit)
	setDefault(&a.MaxLimit, DefaultConcurrencyMaxLimit)
	setDefault(&a.InitialLimit, DefaultConcurrencyInitial)
	setDefault(&a.Tolerance, DefaultConcurrencyTolerance)
	setDefault(&a.Window, DefaultConcurrencyWindow)
	setDefault(&a.LongWindow, DefaultConcurrencyLongWindow)
}

func (c *Config) validateResilience(e *errs) {
	for i := range c.Upstreams {
		c.Upstreams[i].Resilience.validate(e, fmt.Sprintf("upstreams[%d].resilience", i))
	}
	switches := map[string]bool{}
	for k, s := range c.Switches {
		f := fmt.Sprintf("switches[%d]", k)
		checkName(e, f+".name", s.Name, "switch", switches)
		if s.Reply.Result != nil {
			checkRange(e, f+".reply.result", *s.Reply.Result, 0, 0xffff)
		}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if o := l.Overload; o != nil {
			checkNotNegative(e, f+".overload.max_in_flight", o.MaxInFlight)
			checkRange(e, f+".overload.core_reserve_percent", o.CoreReservePercent, 0, 100)
		}
		for j := range l.Routes {
			r := &l.Routes[j].RouteResilience
			rf := fmt.Sprintf("%s.routes[%d]", f, j)
			for k, o := range r.RetryOn {
				checkOneOf(e, fmt.Sprintf("%s.retry_on[%d]", rf, k), o, RetryOnConnectFailure, RetryOnUnavailable, RetryOnResourceExhausted)
			}
			checkRange(e, rf+".max_attempts", r.MaxAttempts, 0, 5) // 0: the default
			if !r.Idempotent && r.MaxAttempts > 1 {
				e.add(rf+".max_attempts", "retries need idempotent: true")
			}
			if !r.Idempotent && r.HedgeDelay != 0 {
				e.add(rf+".hedge_delay", "hedging needs idempotent: true")
			}
			checkNotNegative(e, rf+".hedge_delay", r.HedgeDelay)
			if r.Switch != "" && !switches[r.Switch] {
				e.add(rf+".switch", "unknown switch %q", r.Switch)
			}
		}
	}
}

func (r *Resilience) validate(e *errs, f string) {
	w := r.AdaptiveWeights
	wf := f + ".adaptive_weights"
	checkMin(e, wf+".decay", w.Decay, time.Millisecond)
	checkNotNegative(e, wf+".slow_start", w.SlowStart)
	checkRange(e, wf+".min_weight_percent", w.MinWeightPercent, 0.01, 100)
	o := r.OutlierDetection
	of := f + ".outlier_detection"
	checkMin(e, of+".consecutive_failures", o.ConsecutiveFailures, 1)
	checkRange(e, of+".failure_rate_percent", o.FailureRatePercent, 1, 100)
	checkMin(e, of+".failure_rate_min_requests", o.FailureRateMinRequests, 1)
	checkMin(e, of+".interval", o.Interval, time.Millisecond)
	checkMin(e, of+".base_ejection_time", o.BaseEjectionTime, time.Millisecond)
	if o.MaxEjectionTime < o.BaseEjectionTime {
		e.add(of+".max_ejection_time", "must be at least base_ejection_time (%s)", o.BaseEjectionTime)
	}
	checkRange(e, of+".max_ejection_percent", o.MaxEjectionPercent, 0, 100)
	b := r.RetryBudget
	checkRange(e, f+".retry_budget.budget_percent", b.BudgetPercent, 0, 100)
	checkNotNegative(e, f+".retry_budget.min_concurrency", b.MinConcurrency)
	cb := r.CircuitBreaker
	cf := f + ".circuit_breaker"
	checkNotNegative(e, cf+".max_pending", cb.MaxPending)
	checkMin(e, cf+".max_requests", cb.MaxRequests, 1)
	checkNotNegative(e, cf+".max_endpoint_requests", cb.MaxEndpointRequests)
	a := r.AdaptiveConcurrency
	af := f + ".adaptive_concurrency"
	checkMin(e, af+".min_limit", a.MinLimit, 1)
	if a.MaxLimit < a.MinLimit {
		e.add(af+".max_limit", "must be at least min_limit (%d)", a.MinLimit)
	}
	if a.InitialLimit < a.MinLimit || a.InitialLimit > a.MaxLimit {
		e.add(af+".initial_limit", "must be in [min_limit, max_limit], got %d", a.InitialLimit)
	}
	checkMin(e, af+".tolerance", a.Tolerance, 1)
	checkMin(e, af+".window", a.Window, time.Millisecond)
	checkMin(e, af+".long_window", a.LongWindow, 1)
	checkNotNegative(e, cf+".max_wait", cb.MaxWait)
	checkNotNegative(e, f+".min_remaining", r.MinRemaining)
}
