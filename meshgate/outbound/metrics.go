package outbound

// Metrics: every call counts in meshgate_requests_total{listener,route,
// upstream,code} and meshgate_request_duration_seconds{listener,route,
// upstream} of package admin (admin.RouteMetrics), the same series the
// private listeners use; "route" is the configured route method (bounded
// cardinality); calls matching no route count under route="unmatched".
