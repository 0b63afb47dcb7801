// Package bench is MeshGate's latency benchmark suite: it reproduces on one
// host the seed latency table (direct private TCP, via Envoy tcp_proxy, via
// two Envoys with mTLS, gRPC through the mesh) with MeshGate's bridge paths
// beside it, and reports them with ratios computed inside the same run.
// Anchor scenarios run Envoy on the same jobs — an L7 gRPC proxy (EL7), the
// grpc_json_transcoder (EJT, beside a direct HTTP/1.1 JSON server, HJ) —
// and MeshGate's private→private (MPP) and gRPC→gRPC (MGG) routes, which
// are reported as skipped while `meshgate validate` rejects them. MPPs and
// MGGs are MPP and MGG with a 100 % shadow on the route to a second backend:
// MPPs−MPP and MGGs−MGG are the cost of mirroring every request, and
// MeshGate's shadow counters (/metrics) are read around every measurement
// to show the copies were sent and compared.
//
// # Method
//
// Load is open loop at a constant rate: a single scheduler goroutine computes
// the intended send time of request i as start + i/rate and fires it at that
// time without waiting for earlier responses (legacy connections are
// multiplexed; gRPC calls run in their own goroutines). Latency is recorded
// twice, in HdrHistograms with 1 µs resolution: from the intended send time
// (free of coordinated omission: a stall in the generator or the system
// under test shows up as latency of every request it delayed) and from the
// actual send. Requests whose intended time falls in the warm-up are not
// recorded. Each measurement is repeated and every percentile is reported as
// the median and the spread (min–max) of the repeats.
//
// CPU seconds per 1 000 requests and RSS are read from /proc/<pid>/stat and
// /proc/<pid>/status for every process of a scenario: the bench process
// (which hosts the load generator, and any server run in-process), the
// MeshGate binary, each Envoy and the server subprocesses, with context
// switches per request summed over every thread.
//
// Beside the open loop, a closed-loop mode keeps K requests in flight
// (saturation throughput and requests per proxy CPU-second), an idle mode
// measures each proxy's RSS before any load and per idle MGP or gRPC
// connection (each used for one request; counted from a warm process,
// after one such connection), and hops (A−B of two scenarios that differ by one proxy) are
// computed per repeat and reported with their spread. Targets are printed
// PASS/MISS/N/A on every run and never asserted.
package bench
