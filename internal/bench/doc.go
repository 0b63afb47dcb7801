// Package bench is MeshGate's latency benchmark suite: it reproduces on one
// host the seed latency table (direct private TCP, via Envoy tcp_proxy, via
// two Envoys with mTLS, gRPC through the mesh) with MeshGate's bridge paths
// beside it, and reports them with ratios computed inside the same run.
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
// MeshGate binary, each Envoy and the server subprocesses.
package bench
