package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// faultBackend is a real grpc-go server (any method, raw bytes) whose
// faults the test turns on and off: added latency, answering UNAVAILABLE,
// a capacity (requests beyond `workers` queue inside the backend, as a
// saturated server's do). It answers with its own name, so a client can
// tell which endpoint served it, and counts the requests that arrived with
// their deadline already passed.
type faultBackend struct {
	name    string
	addr    string
	latency atomic.Int64 // ns
	failing atomic.Bool
	workers chan struct{} // nil: unlimited
	calls   atomic.Int64
	expired atomic.Int64 // arrived past their deadline
	busyNS  atomic.Int64 // time workers were held (capacity = workers / mean service time)
	served  atomic.Int64 // requests that held a worker to the end
}

func startFaultBackend(t *testing.T, name string, latency time.Duration, workers int) *faultBackend {
	t.Helper()
	b := &faultBackend{name: name}
	b.latency.Store(int64(latency))
	if workers > 0 {
		b.workers = make(chan struct{}, workers)
	}
	b.addr = testkit.AnyMethod(t, func(ctx context.Context, _ []byte) ([]byte, error) {
		b.calls.Add(1)
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			b.expired.Add(1)
		}
		if b.workers != nil {
			select {
			case b.workers <- struct{}{}:
				held := time.Now()
				defer func() {
					b.busyNS.Add(int64(time.Since(held)))
					b.served.Add(1)
					<-b.workers
				}()
			case <-ctx.Done():
				return nil, status.Error(codes.DeadlineExceeded, "queued too long")
			}
		}
		if d := time.Duration(b.latency.Load()); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				return nil, status.Error(codes.DeadlineExceeded, "too slow")
			}
		}
		if b.failing.Load() {
			return nil, status.Error(codes.Unavailable, b.name+" failing")
		}
		return []byte(b.name), nil
	})
	return b
}

// reply is what a load worker saw for one request.
type reply struct {
	at      time.Duration // since load start, when the reply came
	uin     uint64
	backend string // reply body ("" on error)
	result  uint16
	latency time.Duration
	err     error
}

// loadRecorder runs closed-loop workers against a private listener and
// records every reply.
type loadRecorder struct {
	mu      sync.Mutex
	replies []reply
	start   time.Time
}

func (l *loadRecorder) since(from, to time.Duration) []reply {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []reply
	for _, r := range l.replies {
		if r.at >= from && r.at < to {
			out = append(out, r)
		}
	}
	return out
}

func (l *loadRecorder) now() time.Duration { return time.Since(l.start) }

// run starts workers sending cmd with uins from uins (round robin per
// worker) and deadline (ext 3) until ctx ends. It returns when they stop.
func (l *loadRecorder) run(ctx context.Context, t *testing.T, addr string, workers int, cmd uint32, uins []uint64, deadline time.Duration) *sync.WaitGroup {
	t.Helper()
	cl := testkit.LegacyClient(t, addr, legacy.ClientOptions{Conns: 2})
	l.start = time.Now()
	var wg sync.WaitGroup
	dl := make([]byte, 4)
	binary.BigEndian.PutUint32(dl, uint32(deadline/time.Millisecond))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; ctx.Err() == nil; k += workers {
				uin := uins[k%len(uins)]
				cctx, cancel := context.WithTimeout(ctx, deadline+time.Second)
				t0 := time.Now()
				resp, err := cl.Call(cctx, cmd, uin, []byte("x"), []codec.Ext{{Key: codec.ExtDeadline, Value: dl}})
				cancel()
				r := reply{at: time.Since(l.start), uin: uin, latency: time.Since(t0), err: err}
				if err == nil {
					r.result = resp.Result
					if resp.Result == 0 {
						r.backend = string(resp.Body)
					}
				}
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				l.replies = append(l.replies, r)
				l.mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); cl.Close() }()
	return &wg
}

func share(rs []reply, backend string) float64 {
	if len(rs) == 0 {
		return 0
	}
	n := 0
	for _, r := range rs {
		if r.backend == backend {
			n++
		}
	}
	return float64(n) / float64(len(rs))
}

func p99(rs []reply) time.Duration {
	var ls []time.Duration
	for _, r := range rs {
		if r.err == nil && r.result == 0 {
			ls = append(ls, r.latency)
		}
	}
	if len(ls) == 0 {
		return 0
	}
	slices.Sort(ls)
	return ls[len(ls)*99/100]
}

func failures(rs []reply) int {
	n := 0
	for _, r := range rs {
		if r.err != nil || r.result != 0 {
			n++
		}
	}
	return n
}

// promSum sums the samples of metric name with labels from admin's /metrics.
func promSum(t *testing.T, admin, name string, labels harness.Labels) float64 {
	t.Helper()
	_, body, err := harness.HTTPGet("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return harness.MetricSum(body, name, labels)
}

// startMeshgate runs the real binary on cfg and waits until it is ready; it
// returns the admin and the private listener "in" addresses.
func startMeshgate(t *testing.T, cfg string) (admin, priv string) {
	t.Helper()
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))
	return mg.Admin(), mg.Addr("in")
}

// upstreamG is startMeshgate with the private listener "in" routing route
// to the gRPC upstream g of backends, whose settings (indented 4) follow
// its endpoints.
func upstreamG(t *testing.T, route, upstream string, backends ...*faultBackend) (admin, priv string) {
	t.Helper()
	eps := make([]string, len(backends))
	for i, b := range backends {
		eps[i] = b.addr
	}
	return startMeshgate(t, `listeners:
  - name: in
    kind: private
    address: 127.0.0.1:0
    routes: [`+route+`]
upstreams:
  - name: g
    protocol: grpc
    endpoints: [`+strings.Join(eps, ", ")+`]`+upstream)
}

func uinRange(n int) []uint64 {
	u := make([]uint64, n)
	for i := range u {
		u[i] = uint64(i + 1)
	}
	return u
}

// TestResilienceSlowEndpoint: one of three endpoints becomes 10× slower
// (2ms → 20ms). With adaptive weights (decay 500ms, min_weight_percent
// 0.2: the floor is what keeps probing it, and at the default 1 % its
// ~0.5 % share sits right at the route's p99) its share falls below
// 10 % within 5 s and the route's p99 returns to within 2× the baseline;
// when it recovers its share is back above 25 % within 30 s (in practice
// a few seconds). Before adaptive weights it kept a third of the requests
// and the p99 was the slow endpoint's latency.
func TestResilienceSlowEndpoint(t *testing.T) {
	bs := []*faultBackend{startFaultBackend(t, "a", 2*time.Millisecond, 0), startFaultBackend(t, "b", 2*time.Millisecond, 0), startFaultBackend(t, "c", 2*time.Millisecond, 0)}
	admin, priv := upstreamG(t, `{cmd: 1, method: /svc.S/Get, upstream: g}`, `
    resilience:
      adaptive_weights: {decay: 500ms, slow_start: 1s, min_weight_percent: 0.2}
`, bs...)
	_ = admin
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var l loadRecorder
	wg := l.run(ctx, t, priv, 6, 1, uinRange(100), time.Second)
	defer func() { cancel(); wg.Wait() }()

	time.Sleep(2 * time.Second) // load phase: baseline
	base := l.since(time.Second, 2*time.Second)
	baseP99 := p99(base)
	if s := share(base, "c"); s < 0.2 {
		t.Fatalf("baseline share of c = %.2f, want about 1/3", s)
	}
	slowAt := l.now()
	bs[2].latency.Store(int64(20 * time.Millisecond))
	time.Sleep(5 * time.Second) // load phase: c is slow
	after := l.since(slowAt+4*time.Second, slowAt+5*time.Second)
	sc, afterP99 := share(after, "c"), p99(after)
	t.Logf("baseline p99 %s (%d requests); 4-5 s after c slowed: share of c %.3f, p99 %s (%d requests)", baseP99, len(base), sc, afterP99, len(after))
	if sc >= 0.10 {
		t.Errorf("share of the 10x slower endpoint 4-5 s later = %.3f, want < 0.10", sc)
	}
	if afterP99 > 2*baseP99+time.Millisecond {
		t.Errorf("route p99 %s, want within 2x baseline %s", afterP99, baseP99)
	}
	recoverAt := l.now()
	bs[2].latency.Store(int64(2 * time.Millisecond))
	harness.Eventually(t, 30*time.Second, "share of c back above 25%", func() error {
		now := l.now()
		if s := share(l.since(now-time.Second, now), "c"); s < 0.25 {
			return fmt.Errorf("share of c over the last second %.3f", s)
		}
		return nil
	})
	t.Logf("share of c back above 25%% %s after recovery", (l.now() - recoverAt).Round(100*time.Millisecond))
}

// TestResilienceFailingEndpointConsistentHash: with consistent hashing
// (the SET model), one of three endpoints starts failing every request.
// It is ejected within 1 s, fewer than 1 % of requests fail overall (the
// route is idempotent: the failures before the ejection are retried on
// the next endpoint), no user of another endpoint moves, and the failing
// endpoint's users come back to it after it recovers. Before outlier
// ejection it stayed in the ring and a third of the users failed.
func TestResilienceFailingEndpointConsistentHash(t *testing.T) {
	bs := []*faultBackend{startFaultBackend(t, "a", time.Millisecond, 0), startFaultBackend(t, "b", time.Millisecond, 0), startFaultBackend(t, "c", time.Millisecond, 0)}
	admin, priv := upstreamG(t, `{cmd: 1, method: /svc.S/Get, upstream: g, idempotent: true}`, `
    lb: consistent_hash
    resilience:
      outlier_detection: {consecutive_failures: 5, base_ejection_time: 2s}
`, bs...)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var l loadRecorder
	wg := l.run(ctx, t, priv, 6, 1, uinRange(300), time.Second)
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(1500 * time.Millisecond)
	home := map[uint64]string{}
	for _, r := range l.since(500*time.Millisecond, 1500*time.Millisecond) {
		if r.backend != "" {
			if h, ok := home[r.uin]; ok && h != r.backend {
				t.Fatalf("user %d on both %s and %s while all healthy", r.uin, h, r.backend)
			}
			home[r.uin] = r.backend
		}
	}
	if len(home) < 250 {
		t.Fatalf("only %d of 300 users seen in the baseline", len(home))
	}
	failAt := l.now()
	bs[1].failing.Store(true)
	harness.Eventually(t, 2*time.Second, "ejection of b", func() error {
		if promSum(t, admin, "meshgate_upstream_ejections_total", harness.Labels{"endpoint": bs[1].addr, "upstream": "g"}) < 1 {
			return fmt.Errorf("not ejected yet")
		}
		return nil
	})
	ejectedAfter := l.now() - failAt
	time.Sleep(1500 * time.Millisecond) // load phase: b ejected (ejection lasts 2s)
	during := l.since(failAt, l.now())
	moved, stayed := 0, 0
	for _, r := range during {
		h := home[r.uin]
		switch {
		case r.backend == "" || h == "":
		case h != "b" && r.backend != h:
			t.Errorf("user %d of %s moved to %s", r.uin, h, r.backend)
		case h == "b" && r.backend != "b":
			moved++
		case h != "b":
			stayed++
		}
	}
	f := failures(during)
	t.Logf("ejected %s after b started failing; %d of %d requests failed; b's users served elsewhere %d times, others stayed %d times", ejectedAfter.Round(time.Millisecond), f, len(during), moved, stayed)
	if ejectedAfter > time.Second+100*time.Millisecond { // + one poll interval
		t.Errorf("ejected %s after failing, want within 1s", ejectedAfter)
	}
	if float64(f) >= 0.01*float64(len(during)) {
		t.Errorf("%d of %d requests failed, want < 1%%", f, len(during))
	}
	if moved == 0 {
		t.Error("b's users were never served elsewhere")
	}
	bs[1].failing.Store(false)
	recoverAt := l.now()
	harness.Eventually(t, 10*time.Second, "b's users back on b", func() error {
		now := l.now()
		for _, r := range l.since(max(recoverAt, now-500*time.Millisecond), now) {
			if home[r.uin] == "b" && r.backend != "b" {
				return fmt.Errorf("user %d of b still on %q", r.uin, r.backend)
			}
		}
		return nil
	})
	for _, r := range l.since(recoverAt, l.now()) {
		if h := home[r.uin]; h != "b" && h != "" && r.backend != "" && r.backend != h {
			t.Errorf("after recovery user %d of %s on %s", r.uin, h, r.backend)
		}
	}
}

// openLoop sends requests at rate per second (one goroutine each) until
// ctx ends, recording replies like loadRecorder.run.
func (l *loadRecorder) openLoop(ctx context.Context, t *testing.T, cl *legacy.Client, rate int, cmd uint32, deadline time.Duration) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	dl := make([]byte, 4)
	binary.BigEndian.PutUint32(dl, uint32(deadline/time.Millisecond))
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for uin := uint64(1); ; uin++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(context.Background(), deadline+time.Second)
				defer cancel()
				t0 := time.Now()
				resp, err := cl.Call(cctx, cmd, uin, []byte("x"), []codec.Ext{{Key: codec.ExtDeadline, Value: dl}})
				r := reply{at: time.Since(l.start), uin: uin, latency: time.Since(t0), err: err}
				if err == nil {
					r.result = resp.Result
					if resp.Result == 0 {
						r.backend = string(resp.Body)
					}
				}
				l.mu.Lock()
				l.replies = append(l.replies, r)
				l.mu.Unlock()
			}()
		}
	}()
	return &wg
}

func quantile(ls []time.Duration, q float64) time.Duration {
	if len(ls) == 0 {
		return 0
	}
	slices.Sort(ls)
	return ls[int(float64(len(ls)-1)*q)]
}

// TestResilienceOverload offers 3× a backend's capacity (4 workers × 20 ms
// = 200 requests/s; 600 offered, deadline 200 ms). The adaptive
// concurrency limit (window 50 ms) keeps the backend's queue short:
// goodput stays ≥ 90 % of capacity, every accepted request finishes within
// its deadline, the rest fail fast with result 6, and latency is back to
// normal within 5 s after the load drops. Before the limiter every request
// was sent, queued in the backend, and most timed out (goodput collapses
// to what finishes within 200 ms while the backend works on expired ones).
func TestResilienceOverload(t *testing.T) {
	b := startFaultBackend(t, "a", 20*time.Millisecond, 4)
	admin, priv := upstreamG(t, `{cmd: 1, method: /svc.S/Get, upstream: g}`, `
    resilience:
      adaptive_concurrency: {enabled: true, window: 50ms, long_window: 100, min_limit: 2, initial_limit: 4}
`, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := testkit.LegacyClient(t, priv, legacy.ClientOptions{Conns: 4})
	var l loadRecorder
	l.start = time.Now()
	// Unloaded latency.
	lctx, lcancel := context.WithCancel(ctx)
	wg := l.openLoop(lctx, t, cl, 20, 1, 200*time.Millisecond)
	time.Sleep(time.Second)
	lcancel()
	wg.Wait()
	var unloaded []time.Duration
	for _, r := range l.since(0, l.now()) {
		if r.err == nil && r.result == 0 {
			unloaded = append(unloaded, r.latency)
		}
	}
	normal := quantile(unloaded, 0.5)

	from := l.now()
	lctx, lcancel = context.WithCancel(ctx)
	wg = l.openLoop(lctx, t, cl, 600, 1, 200*time.Millisecond)
	time.Sleep(4 * time.Second) // load phase: 3x overload
	lcancel()
	wg.Wait()
	over := l.since(from+time.Second, from+4*time.Second) // skip the first second (limit adapting)
	var ok, rejected []time.Duration
	late, other := 0, 0
	for _, r := range over {
		switch {
		case r.err == nil && r.result == 0:
			ok = append(ok, r.latency)
			if r.latency > 200*time.Millisecond {
				late++
			}
		case r.err == nil && r.result == 6:
			rejected = append(rejected, r.latency)
		default:
			other++
		}
	}
	goodput := float64(len(ok)) / 3
	// The backend's real capacity on this machine: 4 workers / mean time a
	// worker is held (20 ms sleeps run long on a loaded machine).
	capacity := 4 / (time.Duration(b.busyNS.Load() / max(b.served.Load(), 1))).Seconds()
	t.Logf("unloaded p50 %s; at 3x: goodput %.0f/s of %.0f/s capacity, accepted p50 %s p99 %s (%d past deadline), rejected %d (p50 %s p99 %s), other failures %d, limit %v",
		normal, goodput, capacity, quantile(ok, 0.5), quantile(ok, 0.99), late, len(rejected), quantile(rejected, 0.5), quantile(rejected, 0.99), other,
		promSum(t, admin, "meshgate_upstream_concurrency_limit", harness.Labels{"upstream": "g"}))
	if goodput < 0.9*capacity {
		t.Errorf("goodput %.0f/s, want >= 90%% of %.0f/s", goodput, capacity)
	}
	// Measured at the client: on a loaded machine a few replies can be
	// delayed after MeshGate sent them in time.
	if late > len(ok)/100 {
		t.Errorf("%d of %d accepted requests finished past their 200ms deadline", late, len(ok))
	}
	if len(rejected) == 0 || quantile(rejected, 0.5) > time.Millisecond {
		t.Errorf("rejections: %d, p50 %s; want fast result 6 (< 1ms)", len(rejected), quantile(rejected, 0.5))
	}
	if other > len(over)/100 {
		t.Errorf("%d of %d requests failed other than with result 6", other, len(over))
	}
	// Load drops: latency back to normal within 5 s.
	dropAt := l.now()
	lctx, lcancel = context.WithCancel(ctx)
	wg = l.openLoop(lctx, t, cl, 20, 1, 200*time.Millisecond)
	defer func() { lcancel(); wg.Wait() }()
	harness.Eventually(t, 5*time.Second, "latency back to normal", func() error {
		now := l.now()
		var ls []time.Duration
		for _, r := range l.since(max(dropAt, now-500*time.Millisecond), now) {
			if r.err != nil || r.result != 0 {
				return fmt.Errorf("a request failed after the load dropped: %v result %d", r.err, r.result)
			}
			ls = append(ls, r.latency)
		}
		if len(ls) < 5 || quantile(ls, 0.99) > 2*normal {
			return fmt.Errorf("p99 %s over %d requests, normal p50 %s", quantile(ls, 0.99), len(ls), normal)
		}
		return nil
	})
}

// TestResilienceDeadlineNeverSentExpired: one slot upstream
// (circuit_breaker max_requests 1, max_wait 1s, min_remaining 40ms) and
// ten clients with a 100 ms deadline against a 20 ms backend: requests
// whose deadline passes while they wait are answered with result 5 and
// never sent — MeshGate counts them and the backend never sees a request
// arrive past its deadline. Before, a queued request was sent whatever was
// left. The margins (40 ms of the deadline left at least when sent) are
// wide so that a loaded machine's scheduling delays cannot make a request
// sent in time arrive late; the load runs until enough requests were both
// dropped and served.
func TestResilienceDeadlineNeverSentExpired(t *testing.T) {
	b := startFaultBackend(t, "a", 20*time.Millisecond, 0)
	admin, priv := upstreamG(t, `{cmd: 1, method: /svc.S/Get, upstream: g}`, `
    resilience:
      circuit_breaker: {max_requests: 1, max_wait: 1s}
      min_remaining: 40ms
`, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	var l loadRecorder
	wg := l.run(lctx, t, priv, 10, 1, uinRange(10), 100*time.Millisecond)
	dropped := func() float64 {
		return promSum(t, admin, "meshgate_upstream_deadline_dropped_total", harness.Labels{"stage": "queue", "upstream": "g"})
	}
	harness.Eventually(t, 20*time.Second, "requests dropped in the queue and served", func() error {
		if d, n := dropped(), b.calls.Load(); d < 50 || n < 50 {
			return fmt.Errorf("%v dropped in the queue, %d at the backend", d, n)
		}
		return nil
	})
	lcancel()
	wg.Wait()
	all := l.since(0, time.Hour)
	timeouts, oks := 0, 0
	for _, r := range all {
		switch {
		case r.err == nil && r.result == 0:
			oks++
		case r.err == nil && r.result == 5:
			timeouts++
		}
	}
	d := dropped()
	t.Logf("%d requests: %d ok, %d result 5; MeshGate dropped %v in the queue; backend got %d, %d of them expired", len(all), oks, timeouts, d, b.calls.Load(), b.expired.Load())
	if timeouts == 0 {
		t.Fatalf("no request answered with result 5 (dropped %v): the test did not queue", d)
	}
	if b.expired.Load() != 0 {
		t.Fatalf("backend received %d requests past their deadline", b.expired.Load())
	}
	// +10: the workers' last requests, in flight when the load stopped, are not in `all`.
	if got := b.calls.Load(); got > int64(len(all))-int64(d)+10 {
		t.Fatalf("backend got %d requests, more than the %d not dropped", got, int64(len(all))-int64(d))
	}
}

// TestResilienceRetryBudget: every endpoint flaps (fails everything for
// 300 ms, then serves for 300 ms), outlier detection off, an idempotent
// route with max_attempts 3 and a retry budget of 20 % (minimum 1); twenty
// clients, half with a deadline too short for a retry (40 ms with
// min_remaining 20 ms against 20 ms attempts). Retries stay within the
// budget (without it, each failing request would cost three attempts), the
// denials are counted, and no retry is sent after (or too close to) its
// deadline. The load runs until both kinds of denial were counted over at
// least two flaps' worth of requests; the margins (20 ms left at least when
// sent) are wide enough for a loaded machine.
func TestResilienceRetryBudget(t *testing.T) {
	bs := []*faultBackend{startFaultBackend(t, "a", 20*time.Millisecond, 0), startFaultBackend(t, "b", 20*time.Millisecond, 0), startFaultBackend(t, "c", 20*time.Millisecond, 0)}
	admin, priv := upstreamG(t, `{cmd: 1, method: /svc.S/Get, upstream: g, idempotent: true, max_attempts: 3}`, `
    resilience:
      outlier_detection: {disabled: true}
      retry_budget: {budget_percent: 20, min_concurrency: 1}
      min_remaining: 20ms
`, bs...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	flips := make(chan struct{}, 100)
	go func() { // flap
		for on := true; lctx.Err() == nil; on = !on {
			for _, b := range bs {
				b.failing.Store(on)
			}
			select {
			case flips <- struct{}{}:
			default:
			}
			select {
			case <-lctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	var short, long loadRecorder
	w1 := short.run(lctx, t, priv, 10, 1, uinRange(50), 40*time.Millisecond)
	w2 := long.run(lctx, t, priv, 10, 1, uinRange(50), 500*time.Millisecond)
	retries := func(event string) float64 {
		return promSum(t, admin, "meshgate_upstream_retries_total", harness.Labels{"event": event, "upstream": "g"})
	}
	harness.Eventually(t, 20*time.Second, "retries denied by the budget and by the deadline over two flaps", func() error {
		if len(flips) < 4 {
			return fmt.Errorf("%d flips", len(flips))
		}
		if b, d := retries("budget_exhausted"), retries("deadline"); b < 10 || d < 10 {
			return fmt.Errorf("denied by budget %v, by deadline %v", b, d)
		}
		return nil
	})
	lcancel()
	w1.Wait()
	w2.Wait()
	requests := len(short.since(0, time.Hour)) + len(long.since(0, time.Hour))
	var calls, expired int64
	for _, b := range bs {
		calls += b.calls.Load()
		expired += b.expired.Load()
	}
	sent, budget, deadline := retries("retry"), retries("budget_exhausted"), retries("deadline")
	t.Logf("%d requests, %d backend calls; retries sent %v, denied by budget %v, by deadline %v; %d arrived expired", requests, calls, sent, budget, deadline, expired)
	// +20: the workers' last requests, in flight when the load stopped,
	// are not in requests but their retries are counted.
	if sent > 0.35*float64(requests+20) {
		t.Errorf("%v retries for %d requests: more than the 20%% budget allows", sent, requests)
	}
	// MeshGate sends nothing with less than min_remaining left; on a loaded
	// machine the hop to the backend can still eat a few ms, rarely.
	if expired > calls/1000 {
		t.Errorf("%d of %d attempts reached a backend past their deadline", expired, calls)
	}
}

// TestResilienceSwitch: a route switched off from the admin API answers at
// once with result 6 and never reaches its upstream; switched back it is
// served again; a switch off in config answers its static reply.
func TestResilienceSwitch(t *testing.T) {
	b := startFaultBackend(t, "a", 0, 0)
	admin, priv := startMeshgate(t, `switches:
  - {name: rec, reply: {message: "recommendations off"}}
  - {name: gift, off: true, reply: {result: 0, body: "static gift"}}
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 1, method: /svc.S/Get, upstream: g}
      - {cmd: 2, method: /svc.S/Rec, upstream: g, switch: rec}
      - {cmd: 3, method: /svc.S/Gift, upstream: g, switch: gift}
upstreams:
  - {name: g, protocol: grpc, endpoints: [`+b.addr+`]}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := testkit.LegacyClient(t, priv, legacy.ClientOptions{Conns: 1})
	call := func(cmd uint32) *codec.Frame {
		resp, err := cl.Call(ctx, cmd, 7, []byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := call(2); r.Result != 0 || string(r.Body) != "a" {
		t.Fatalf("switch on: result %d body %q", r.Result, r.Body)
	}
	if r := call(3); r.Result != 0 || string(r.Body) != "static gift" {
		t.Fatalf("switched off in config: result %d body %q, want the static reply", r.Result, r.Body)
	}
	post := func(method, path string) {
		req, _ := newRequest(method, "http://"+admin+path)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	post("POST", "/switches/rec?off=1")
	before := b.calls.Load()
	t0 := time.Now()
	r := call(2)
	el := time.Since(t0)
	msg, _ := r.ExtValue(codec.ExtErrorMsg)
	if r.Result != 6 || string(msg) != "recommendations off" {
		t.Fatalf("switched off: result %d message %q, want 6 %q", r.Result, msg, "recommendations off")
	}
	if b.calls.Load() != before {
		t.Fatal("a switched-off route reached its upstream")
	}
	t.Logf("switched-off reply in %s", el)
	if r := call(1); r.Result != 0 {
		t.Fatalf("another route affected: result %d", r.Result)
	}
	post("DELETE", "/switches/rec")
	if r := call(2); r.Result != 0 || string(r.Body) != "a" {
		t.Fatalf("switch back on: result %d body %q", r.Result, r.Body)
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func newRequest(method, url string) (*http.Request, error) { return http.NewRequest(method, url, nil) }

// TestResilienceListenerOverloadCoreFirst: a private listener capped at 4
// requests in flight with half reserved for core routes. With a slow
// backend, non-core requests past 2 fail at once with result 6 while a core
// request is still admitted. Without the cap all were sent.
func TestResilienceListenerOverloadCoreFirst(t *testing.T) {
	b := startFaultBackend(t, "a", 300*time.Millisecond, 0)
	_, priv := startMeshgate(t, `listeners:
  - name: in
    kind: private
    address: 127.0.0.1:0
    overload: {max_in_flight: 4, core_reserve_percent: 50}
    routes:
      - {cmd: 1, method: /svc.S/Get, upstream: g}
      - {cmd: 2, method: /svc.S/Login, upstream: g, core: true}
upstreams:
  - {name: g, protocol: grpc, endpoints: [`+b.addr+`]}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := testkit.LegacyClient(t, priv, legacy.ClientOptions{Conns: 1})
	type res struct {
		cmd    uint32
		result uint16
		took   time.Duration
	}
	out := make(chan res, 5)
	send := func(cmd uint32) {
		t0 := time.Now()
		r, err := cl.Call(ctx, cmd, 1, []byte("x"), nil)
		if err != nil {
			t.Error(err)
			out <- res{cmd, 0xffff, 0}
			return
		}
		out <- res{cmd, r.Result, time.Since(t0)}
	}
	for range 4 {
		go send(1)
	}
	harness.Eventually(t, 5*time.Second, "two non-core requests at the backend", func() error {
		if n := b.calls.Load(); n < 2 {
			return fmt.Errorf("%d at the backend", n)
		}
		return nil
	})
	go send(2)
	var admitted, shed, core int
	for range 5 {
		r := <-out
		switch {
		case r.cmd == 2 && r.result == 0:
			core++
		case r.cmd == 1 && r.result == 0:
			admitted++
		case r.cmd == 1 && r.result == 6:
			shed++
			if r.took > 100*time.Millisecond {
				t.Errorf("shed request took %s, want at once", r.took)
			}
		default:
			t.Errorf("cmd %d: result %d", r.cmd, r.result)
		}
	}
	if admitted != 2 || shed != 2 || core != 1 {
		t.Fatalf("non-core admitted %d shed %d, core served %d; want 2, 2, 1", admitted, shed, core)
	}
}
