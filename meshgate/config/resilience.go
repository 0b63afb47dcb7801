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
			if r.MaxAttempts == 0 {
				r.MaxAttempts = 1
			}
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
	setDur(&w.Decay, DefaultLatencyDecay)
	setDur(&w.SlowStart, DefaultSlowStart)
	if w.MinWeightPercent == 0 {
		w.MinWeightPercent = DefaultMinWeightPercent
	}
	o := &r.OutlierDetection
	setInt(&o.ConsecutiveFailures, DefaultConsecutiveFailures)
	setInt(&o.FailureRatePercent, DefaultFailureRatePercent)
	setInt(&o.FailureRateMinRequests, DefaultFailureRateMinReqs)
	setDur(&o.Interval, DefaultOutlierInterval)
	setDur(&o.BaseEjectionTime, DefaultBaseEjectionTime)
	setDur(&o.MaxEjectionTime, DefaultMaxEjectionTime)
	setInt(&o.MaxEjectionPercent, DefaultMaxEjectionPercent)
	b := &r.RetryBudget
	setInt(&b.BudgetPercent, DefaultRetryBudgetPercent)
	setInt(&b.MinConcurrency, DefaultRetryMinConcurrency)
	cb := &r.CircuitBreaker
	setInt(&cb.MaxPending, DefaultMaxPending)
	setInt(&cb.MaxRequests, DefaultMaxRequests)
	a := &r.AdaptiveConcurrency
	setInt(&a.MinLimit, DefaultConcurrencyMinLimit)
	setInt(&a.MaxLimit, DefaultConcurrencyMaxLimit)
	setInt(&a.InitialLimit, DefaultConcurrencyInitial)
	if a.Tolerance == 0 {
		a.Tolerance = DefaultConcurrencyTolerance
	}
	setDur(&a.Window, DefaultConcurrencyWindow)
	setInt(&a.LongWindow, DefaultConcurrencyLongWindow)
}

func (c *Config) validateResilience(e *errs) {
	for i := range c.Upstreams {
		c.Upstreams[i].Resilience.validate(e, fmt.Sprintf("upstreams[%d].resilience", i))
	}
	switches := map[string]bool{}
	for k, s := range c.Switches {
		f := fmt.Sprintf("switches[%d]", k)
		switch {
		case s.Name == "":
			e.add(f+".name", "required")
		case switches[s.Name]:
			e.add(f+".name", "duplicate switch %q", s.Name)
		}
		switches[s.Name] = true
		if s.Reply.Result != nil && *s.Reply.Result > 0xffff {
			e.add(f+".reply.result", "must be in [0, 65535], got %d", *s.Reply.Result)
		}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if o := l.Overload; o != nil {
			if o.MaxInFlight < 0 {
				e.add(f+".overload.max_in_flight", "must not be negative")
			}
			if o.CoreReservePercent < 0 || o.CoreReservePercent > 100 {
				e.add(f+".overload.core_reserve_percent", "must be in [0, 100], got %d", o.CoreReservePercent)
			}
		}
		for j := range l.Routes {
			r := &l.Routes[j].RouteResilience
			rf := fmt.Sprintf("%s.routes[%d]", f, j)
			for k, o := range r.RetryOn {
				switch o {
				case RetryOnConnectFailure, RetryOnUnavailable, RetryOnResourceExhausted:
				default:
					e.add(fmt.Sprintf("%s.retry_on[%d]", rf, k), "must be one of %s, %s, %s; got %q",
						RetryOnConnectFailure, RetryOnUnavailable, RetryOnResourceExhausted, o)
				}
			}
			if r.MaxAttempts < 0 || r.MaxAttempts > 5 {
				e.add(rf+".max_attempts", "must be in [1, 5], got %d", r.MaxAttempts)
			}
			if !r.Idempotent && r.MaxAttempts > 1 {
				e.add(rf+".max_attempts", "retries need idempotent: true")
			}
			if !r.Idempotent && r.HedgeDelay != 0 {
				e.add(rf+".hedge_delay", "hedging needs idempotent: true")
			}
			if r.HedgeDelay < 0 {
				e.add(rf+".hedge_delay", "must not be negative")
			}
			if r.Switch != "" && !switches[r.Switch] {
				e.add(rf+".switch", "unknown switch %q", r.Switch)
			}
		}
	}
}

func (r *Resilience) validate(e *errs, f string) {
	w := r.AdaptiveWeights
	if w.Decay < time.Millisecond {
		e.add(f+".adaptive_weights.decay", "must be at least 1ms")
	}
	if w.SlowStart < 0 {
		e.add(f+".adaptive_weights.slow_start", "must not be negative")
	}
	if w.MinWeightPercent < 0.01 || w.MinWeightPercent > 100 {
		e.add(f+".adaptive_weights.min_weight_percent", "must be in [0.01, 100], got %g", w.MinWeightPercent)
	}
	o := r.OutlierDetection
	of := f + ".outlier_detection"
	if o.ConsecutiveFailures < 1 {
		e.add(of+".consecutive_failures", "must be at least 1")
	}
	if o.FailureRatePercent < 1 || o.FailureRatePercent > 100 {
		e.add(of+".failure_rate_percent", "must be in [1, 100], got %d", o.FailureRatePercent)
	}
	if o.FailureRateMinRequests < 1 {
		e.add(of+".failure_rate_min_requests", "must be at least 1")
	}
	if o.Interval < time.Millisecond {
		e.add(of+".interval", "must be at least 1ms")
	}
	if o.BaseEjectionTime < time.Millisecond {
		e.add(of+".base_ejection_time", "must be at least 1ms")
	}
	if o.MaxEjectionTime < o.BaseEjectionTime {
		e.add(of+".max_ejection_time", "must be at least base_ejection_time (%s)", o.BaseEjectionTime)
	}
	if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		e.add(of+".max_ejection_percent", "must be in [0, 100], got %d", o.MaxEjectionPercent)
	}
	b := r.RetryBudget
	if b.BudgetPercent < 0 || b.BudgetPercent > 100 {
		e.add(f+".retry_budget.budget_percent", "must be in [0, 100], got %d", b.BudgetPercent)
	}
	if b.MinConcurrency < 0 {
		e.add(f+".retry_budget.min_concurrency", "must not be negative")
	}
	cb := r.CircuitBreaker
	if cb.MaxPending < 0 {
		e.add(f+".circuit_breaker.max_pending", "must not be negative")
	}
	if cb.MaxRequests < 1 {
		e.add(f+".circuit_breaker.max_requests", "must be at least 1")
	}
	if cb.MaxEndpointRequests < 0 {
		e.add(f+".circuit_breaker.max_endpoint_requests", "must not be negative")
	}
	a := r.AdaptiveConcurrency
	af := f + ".adaptive_concurrency"
	if a.MinLimit < 1 {
		e.add(af+".min_limit", "must be at least 1")
	}
	if a.MaxLimit < a.MinLimit {
		e.add(af+".max_limit", "must be at least min_limit (%d)", a.MinLimit)
	}
	if a.InitialLimit < a.MinLimit || a.InitialLimit > a.MaxLimit {
		e.add(af+".initial_limit", "must be in [min_limit, max_limit], got %d", a.InitialLimit)
	}
	if a.Tolerance < 1 {
		e.add(af+".tolerance", "must be at least 1, got %g", a.Tolerance)
	}
	if a.Window < time.Millisecond {
		e.add(af+".window", "must be at least 1ms")
	}
	if a.LongWindow < 1 {
		e.add(af+".long_window", "must be at least 1")
	}
	if cb.MaxWait < 0 {
		e.add(f+".circuit_breaker.max_wait", "must not be negative")
	}
	if r.MinRemaining < 0 {
		e.add(f+".min_remaining", "must not be negative")
	}
}
