package config

import (
	"testing"
	"time"
)

const resilGood = `
switches:
  - {name: recommend, reply: {message: "feature off"}}
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:7000
    overload: {max_in_flight: 100}
    routes:
      - {cmd: 1, method: /demo.Echo/Echo, upstream: g, idempotent: true, core: true, hedge_delay: 20ms}
      - {cmd: 2, method: /demo.Echo/Rec, upstream: g, switch: recommend}
upstreams:
  - name: g
    protocol: grpc
    endpoints: [127.0.0.1:9000]
    resilience:
      outlier_detection: {consecutive_failures: 3, base_ejection_time: 1s}
      adaptive_concurrency: {enabled: true}
`

func TestResilienceDefaults(t *testing.T) {
	c, err := Parse([]byte(resilGood), "")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Upstreams[0].Resilience
	if r.OutlierDetection.ConsecutiveFailures != 3 || r.OutlierDetection.BaseEjectionTime != time.Second ||
		r.OutlierDetection.MaxEjectionPercent != DefaultMaxEjectionPercent || r.AdaptiveWeights.Decay != DefaultLatencyDecay ||
		r.RetryBudget.BudgetPercent != DefaultRetryBudgetPercent || r.CircuitBreaker.MaxRequests != DefaultMaxRequests ||
		!r.AdaptiveConcurrency.Enabled || r.AdaptiveConcurrency.InitialLimit != DefaultConcurrencyInitial {
		t.Fatalf("upstream resilience defaults: %+v", r)
	}
	r0, r1 := c.Listeners[0].Routes[0], c.Listeners[0].Routes[1]
	if !r0.Idempotent || !r0.Core || r0.MaxAttempts != DefaultMaxAttempts || len(r0.RetryOn) != 2 || r0.HedgeDelay != 20*time.Millisecond {
		t.Fatalf("idempotent route defaults: %+v", r0.RouteResilience)
	}
	if r1.MaxAttempts != 1 || len(r1.RetryOn) != 0 || r1.Switch != "recommend" {
		t.Fatalf("plain route defaults: %+v", r1.RouteResilience)
	}
	if o := c.Listeners[0].Overload; o.CoreReservePercent != DefaultCoreReservePercent {
		t.Fatalf("overload defaults: %+v", o)
	}
	if s := c.Switches[0]; s.Reply.Result == nil || *s.Reply.Result != 6 || s.Off {
		t.Fatalf("switch defaults: %+v", s)
	}
	// Secure by default: an upstream with no resilience block still gets
	// outlier detection, a circuit breaker and a retry budget.
	c, err = Parse([]byte(good), "")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Upstreams[0].Resilience; r.OutlierDetection.Disabled || r.OutlierDetection.ConsecutiveFailures == 0 || r.CircuitBreaker.MaxRequests == 0 {
		t.Fatalf("no resilience block: %+v", r)
	}
}

func TestResilienceErrorsNameTheField(t *testing.T) {
	cases := map[string]fieldCase{
		"retry not idempotent": {"upstream: g, switch: recommend}", "upstream: g, max_attempts: 3}", "listeners[0].routes[1].max_attempts"},
		"hedge not idempotent": {"upstream: g, switch: recommend}", "upstream: g, hedge_delay: 1ms}", "listeners[0].routes[1].hedge_delay"},
		"bad retry_on":         {"idempotent: true,", "idempotent: true, retry_on: [always],", "listeners[0].routes[0].retry_on[0]"},
		"unknown switch":       {"switch: recommend}", "switch: nope}", "listeners[0].routes[1].switch"},
		"ejection pct":         {"base_ejection_time: 1s}", "max_ejection_percent: 101}", "upstreams[0].resilience.outlier_detection.max_ejection_percent"},
		"max below base":       {"base_ejection_time: 1s}", "base_ejection_time: 10s, max_ejection_time: 1s}", "upstreams[0].resilience.outlier_detection.max_ejection_time"},
		"limits":               {"{enabled: true}", "{enabled: true, min_limit: 10, max_limit: 5}", "upstreams[0].resilience.adaptive_concurrency.max_limit"},
		"tolerance":            {"{enabled: true}", "{enabled: true, tolerance: 0.5}", "upstreams[0].resilience.adaptive_concurrency.tolerance"},
		"budget":               {"adaptive_concurrency:", "retry_budget: {budget_percent: 200}\n      adaptive_concurrency:", "upstreams[0].resilience.retry_budget.budget_percent"},
		"breaker":              {"adaptive_concurrency:", "circuit_breaker: {max_wait: -1s}\n      adaptive_concurrency:", "upstreams[0].resilience.circuit_breaker.max_wait"},
		"min_remaining":        {"adaptive_concurrency:", "min_remaining: -1ms\n      adaptive_concurrency:", "upstreams[0].resilience.min_remaining"},
		"reserve":              {"{max_in_flight: 100}", "{max_in_flight: 100, core_reserve_percent: 101}", "listeners[0].overload.core_reserve_percent"},
		"dup switch":           {"switches:\n", "switches:\n  - {name: recommend}\n", "switches[1].name"},
		"switch result":        {`{message: "feature off"}`, `{result: 70000}`, "switches[0].reply.result"},
		"unknown field":        {"{enabled: true}", "{enabled: true, bogus: 1}", "bogus"},
	}
	wantFieldErrors(t, resilGood, "", cases)
}
