// Package resilience protects upstreams and spreads load by endpoint
// health, in the manner of QQ's L5/CMLB name service, for both upstream
// protocols (it never sees a frame or a gRPC message):
//
//   - adaptive weights: every Endpoint keeps time-decayed EWMAs of its
//     latency and success rate; its effective weight is
//     base × success² × min(1, 1.2 × best latency / latency)³ × slow-start
//     ramp, floored at a minimum
//     share so a degraded endpoint keeps being sampled (weights.go);
//   - balancers over those weights: smooth weighted round robin,
//     power-of-two-choices weighted by load × latency, and a consistent
//     hash ring that skips ejected endpoints (balancer.go);
//   - outlier ejection on consecutive failures and on failure rate, capped
//     by max_ejection_percent, ejection time base × count capped
//     (endpoint.go);
//   - a Guard per upstream that admits a request (deadline check, circuit
//     breaker caps, adaptive concurrency limit with a core reserve),
//     picks endpoints and retries or hedges idempotent requests under a
//     retry budget (guard.go, gate.go, limiter.go, budget.go);
//   - listener-wide priority admission (admission.go) and service switches
//     settable from config or the admin API (switch.go).
//
// Time is injected (Clock) so every rule is tested without sleeping.
// Metrics and logs go through the Observer interface (metrics.go).
package resilience
