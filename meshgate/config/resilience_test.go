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
