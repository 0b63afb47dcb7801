package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/split"
)

// rawService starts a grpc-go server answering every method with
// handle(method, uin, body) through the raw codec.
func rawService(t *testing.T, handle func(ctx context.Context, method string, uin uint64, body []byte) []byte) string {
	t.Helper()
	return testkit.AnyMethod(t, func(ctx context.Context, body []byte) ([]byte, error) {
		method, _ := grpc.Method(ctx)
		var uin uint64
		if v := metadata.ValueFromIncomingContext(ctx, mapping.MDUIN); len(v) > 0 {
			uin, _ = strconv.ParseUint(v[0], 10, 64)
		}
		return handle(ctx, method, uin, body), nil
	})
}

// sides tells which backend served: legacy uppercases "u<uin>", the new
// service answers "new:u<uin>".
const (
	sideLegacy = 1
	sideNew    = 2
)

func sideOf(uin uint64, body []byte) uint8 {
	want := "u" + strconv.FormatUint(uin, 10)
	switch string(body) {
	case strings.ToUpper(want):
		return sideLegacy
	case "new:" + want:
		return sideNew
	}
	return 0
}

// recorder collects, per stable phase, which side served each uin.
type recorder struct {
	name  string
	phase atomic.Int64 // -1 while switching
	total atomic.Int64
	fails atomic.Int64

	mu      sync.Mutex
	cur     int64
	sides   map[uint64]uint8
	failMsg []string
}

func newRecorder(name string) *recorder {
	r := &recorder{name: name, sides: map[uint64]uint8{}}
	r.phase.Store(-1)
	return r
}

func (r *recorder) begin(p int64) {
	r.mu.Lock()
	r.cur, r.sides = p, map[uint64]uint8{}
	r.mu.Unlock()
	r.phase.Store(p)
}

func (r *recorder) end() map[uint64]uint8 {
	r.phase.Store(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	// A worker that read the phase before the Store above checks cur under
	// the lock: after this, the returned map is the caller's alone.
	r.cur = -1
	return r.sides
}

func (r *recorder) seen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sides)
}

func (r *recorder) record(p0 int64, uin uint64, body []byte, err error) {
	r.total.Add(1)
	s := uint8(0)
	if err == nil {
		s = sideOf(uin, body)
	}
	if s == 0 {
		r.fails.Add(1)
		r.mu.Lock()
		if len(r.failMsg) < 5 {
			r.failMsg = append(r.failMsg, fmt.Sprintf("uin %d: %q %v", uin, body, err))
		}
		r.mu.Unlock()
		return
	}
	if p0 < 0 || r.phase.Load() != p0 {
		return
	}
	r.mu.Lock()
	if r.cur == p0 {
		r.sides[uin] |= s
	}
	r.mu.Unlock()
}

const migrateUINs = 10000

func testUIN(i int) uint64 { return 1_000_003 + uint64(i)*7919 }

// drive runs workers goroutines calling call over the test uins, each reply
// recorded in rec, until ctx ends; done runs once they all stopped.
func drive(ctx context.Context, rec *recorder, workers int, wg *sync.WaitGroup, call func(ctx context.Context, uin uint64, body []byte) ([]byte, error), done func()) {
	var inner sync.WaitGroup
	for w := range workers {
		inner.Add(1)
		go func() {
			defer inner.Done()
			for i := w; ctx.Err() == nil; i += workers {
				uin := testUIN(i % migrateUINs)
				p0 := rec.phase.Load()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				out, err := call(cctx, uin, []byte("u"+strconv.FormatUint(uin, 10)))
				cancel()
				if ctx.Err() != nil {
					return
				}
				rec.record(p0, uin, out, err)
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); inner.Wait(); done() }()
}

// privateLoad drives workers MGP clients over uins until ctx ends.
func privateLoad(ctx context.Context, t *testing.T, addr string, rec *recorder, workers int, wg *sync.WaitGroup) {
	cl := testkit.LegacyClient(t, addr, legacy.ClientOptions{Conns: 4})
	drive(ctx, rec, workers, wg, func(ctx context.Context, uin uint64, body []byte) ([]byte, error) {
		f, err := cl.Call(ctx, legacy.CmdUppercase, uin, body, nil)
		if err != nil {
			return nil, err
		}
		if f.Result != 0 {
			return f.Body, fmt.Errorf("result %d", f.Result)
		}
		return f.Body, nil
	}, func() { _ = cl.Close() })
}

// grpcLoad drives workers grpc-go callers over uins (x-mgp-uin) until ctx ends.
func grpcLoad(ctx context.Context, t *testing.T, addr, method string, rec *recorder, workers int, wg *sync.WaitGroup) {
	cc := testkit.Client(t, addr)
	drive(ctx, rec, workers, wg, func(ctx context.Context, uin uint64, body []byte) ([]byte, error) {
		var out []byte
		err := cc.Invoke(metadata.AppendToOutgoingContext(ctx, mapping.MDUIN, strconv.FormatUint(uin, 10)), method, body, &out)
		return out, err
	}, func() { _ = cc.Close() })
}

func migrateStatus(t *testing.T, admin string) migrate.Status {
	t.Helper()
	code, body, err := harness.HTTPGet("http://" + admin + "/migrate/status")
	if err != nil || code != 200 {
		t.Fatalf("/migrate/status: %d %v %s", code, err, body)
	}
	var st migrate.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func routeStatus(st migrate.Status, id string) *migrate.RouteStatus {
	for i := range st.Routes {
		if st.Routes[i].Route == id {
			return &st.Routes[i]
		}
	}
	return nil
}

func migrateConfig(legacyAddr, newAddr string, percent float64) string {
	return fmt.Sprintf(`
listeners:
  - name: mgp
    kind: private
    address: 127.0.0.1:0
    routes:
      - cmd: 2
        split:
          name: up
          backends:
            - {upstream: legacy}
            - {upstream: newsvc, method: /new.Svc/Upper, percent: %v}
  - name: grpc
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - method: /legacy.Legacy/Upper
        cmd: 2
        split:
          name: gup
          backends:
            - {upstream: legacy}
            - {upstream: newsvc, percent: %v}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 2}
  - {name: newsvc, protocol: grpc, endpoints: [%q], connections: 2}
`, percent, percent, legacyAddr, newAddr)
}

func runCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("meshgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestMigrateSplitStepsAndRollback: the real binary bridges MGP clients
// (private→private to the legacy server, private→gRPC to the new service)
// and grpc-go callers (gRPC→private, gRPC→gRPC) with 10,000 distinct uins
// under load while the split steps 0 → 1 → 10 → 50 → 100 %, an operator
// rolls both routes back with `meshgate migrate rollback` (kept across a
// reload), clears, and the split goes back to 0 %. No request fails; in
// each step every uin is on exactly one side, the side its bucket says; the
// new side only grows while widening; the fraction is the target ±2 %; each
// switch is visible within 1 s.
func TestMigrateSplitStepsAndRollback(t *testing.T) {
	bin := harness.MeshgateBin(t)
	_, legacyAddr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	newAddr := rawService(t, func(_ context.Context, _ string, _ uint64, body []byte) []byte {
		return append([]byte("new:"), body...)
	})
	mg := harness.StartMeshgate(t, migrateConfig(legacyAddr, newAddr, 0), harness.WaitReady(15*time.Second))
	p, admin, priv, gaddr := mg.Proc, mg.Admin(), mg.Addr("mgp"), mg.Addr("grpc")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	recP, recG := newRecorder("private"), newRecorder("grpc")
	privateLoad(ctx, t, priv, recP, 16, &wg)
	grpcLoad(ctx, t, gaddr, "/legacy.Legacy/Upper", recG, 16, &wg)

	// cover runs a stable phase until both loads have seen every uin.
	cover := func(phase int64, what string) (map[uint64]uint8, map[uint64]uint8) {
		t.Helper()
		recP.begin(phase)
		recG.begin(phase)
		start := time.Now()
		harness.Eventually(t, 60*time.Second, what+": every uin served", func() error {
			if a, b := recP.seen(), recG.seen(); a < migrateUINs || b < migrateUINs {
				return fmt.Errorf("private %d, grpc %d of %d uins", a, b, migrateUINs)
			}
			return nil
		})
		sp, sg := recP.end(), recG.end()
		t.Logf("%s: all %d uins on both paths in %v (requests so far: private %d, grpc %d)", what, migrateUINs, time.Since(start).Round(time.Millisecond), recP.total.Load(), recG.total.Load())
		return sp, sg
	}
	// check: each uin on exactly one side, the one its bucket picks.
	check := func(what string, sides map[uint64]uint8, percent float64, prevNew map[uint64]bool, allLegacy bool) map[uint64]bool {
		t.Helper()
		onNew := map[uint64]bool{}
		for uin, s := range sides {
			if s != sideLegacy && s != sideNew {
				t.Fatalf("%s: uin %d served by both sides in one step", what, uin)
			}
			wantNew := !allLegacy && split.Bucket(uin) < config0Buckets(percent)
			if (s == sideNew) != wantNew {
				t.Fatalf("%s: uin %d (bucket %d) on side %d", what, uin, split.Bucket(uin), s)
			}
			if s == sideNew {
				onNew[uin] = true
			}
		}
		for uin := range prevNew {
			if !onNew[uin] {
				t.Fatalf("%s: uin %d left the new side while the split widened", what, uin)
			}
		}
		target := percent / 100
		if allLegacy {
			target = 0
		}
		if frac := float64(len(onNew)) / float64(len(sides)); frac < target-0.02 || frac > target+0.02 {
			t.Fatalf("%s: %.4f of uins on the new side, want %.2f ± 0.02", what, frac, target)
		}
		return onNew
	}
	// step writes the config, reloads and measures until /migrate/status
	// shows the new percent on both routes.
	step := func(percent float64) time.Duration {
		t.Helper()
		recP.phase.Store(-1)
		recG.phase.Store(-1)
		mg.WriteConfig(migrateConfig(legacyAddr, newAddr, percent))
		start := time.Now()
		_ = p.Cmd.Process.Signal(syscall.SIGHUP)
		var took time.Duration
		harness.Eventually(t, 10*time.Second, fmt.Sprintf("split at %v%%", percent), func() error {
			st := migrateStatus(t, admin)
			for _, id := range []string{"up", "gup"} {
				r := routeStatus(st, id)
				if r == nil || len(r.Backends) != 2 || r.Backends[1].Percent != percent {
					return fmt.Errorf("route %s: %+v", id, r)
				}
			}
			took = time.Since(start)
			return nil
		})
		return took
	}

	var prevP, prevG map[uint64]bool
	for i, percent := range []float64{0, 1, 10, 50, 100} {
		took := step(percent)
		if took > time.Second {
			t.Errorf("switch to %v%% took %v", percent, took)
		}
		sp, sg := cover(int64(i), fmt.Sprintf("%v%%", percent))
		prevP = check(fmt.Sprintf("private %v%%", percent), sp, percent, prevP, false)
		prevG = check(fmt.Sprintf("grpc %v%%", percent), sg, percent, prevG, false)
		t.Logf("%v%%: switch visible in %v; new side: private %d, grpc %d uins", percent, took.Round(time.Millisecond), len(prevP), len(prevG))
	}

	// Rollback in one command per route, under load.
	recP.phase.Store(-1)
	recG.phase.Store(-1)
	start := time.Now()
	runCLI(t, bin, "migrate", "rollback", "up", "-admin", admin, "-reason", "e2e incident")
	runCLI(t, bin, "migrate", "rollback", "gup", "-admin", admin)
	took := time.Since(start)
	sp, sg := cover(10, "rollback")
	check("private rollback", sp, 100, nil, true)
	check("grpc rollback", sg, 100, nil, true)
	t.Logf("rollback of both routes: %v for the two commands; every uin back on legacy", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("rollback took %v", took)
	}
	_, cfgView, _ := harness.HTTPGet("http://" + admin + "/config")
	_, metrics, _ := harness.HTTPGet("http://" + admin + "/metrics")
	if !strings.Contains(cfgView, `"migrate_overrides"`) || !strings.Contains(cfgView, "e2e incident") ||
		!strings.Contains(metrics, `meshgate_migrate_override{backend="legacy",route="up"} 1`) {
		t.Fatalf("override not visible in /config or /metrics")
	}
	// The override survives a reload of the (unchanged, 100 %) config.
	before := migrateStatus(t, admin)
	mg.Reload(migrateConfig(legacyAddr, newAddr, 100) + "# reload\n")
	if _, v, _ := harness.HTTPGet(mg.AdminURL("/config")); !strings.Contains(v, `"generation"`) || v == cfgView {
		t.Fatal("/config unchanged by the reload")
	}
	_ = before
	sp, sg = cover(11, "rollback after reload")
	check("private rollback after reload", sp, 100, nil, true)
	check("grpc rollback after reload", sg, 100, nil, true)
	runCLI(t, bin, "migrate", "clear", "up", "-admin", admin)
	runCLI(t, bin, "migrate", "clear", "gup", "-admin", admin)
	sp, sg = cover(12, "cleared")
	check("private cleared", sp, 100, nil, false)
	check("grpc cleared", sg, 100, nil, false)

	took = step(0)
	if took > time.Second {
		t.Errorf("switch to 0%% took %v", took)
	}
	sp, sg = cover(13, "back to 0%")
	check("private 0%", sp, 0, nil, false)
	check("grpc 0%", sg, 0, nil, false)

	cancel()
	wg.Wait()
	for _, r := range []*recorder{recP, recG} {
		if f := r.fails.Load(); f != 0 {
			t.Errorf("%s: %d of %d requests failed: %v", r.name, f, r.total.Load(), r.failMsg)
		}
		t.Logf("%s: %d requests, %d failed", r.name, r.total.Load(), r.fails.Load())
	}
	out := runCLI(t, bin, "migrate", "status", "-admin", admin)
	if !strings.Contains(out, "up") || !strings.Contains(out, "newsvc") {
		t.Fatalf("migrate status:\n%s", out)
	}
	t.Logf("meshgate migrate status:\n%s", out)
}

func config0Buckets(percent float64) uint32 { return uint32(percent*100 + 0.5) }

// TestMigrateShadowDiff: a route mirrors every request to a shadow gRPC
// service that answers differently for a known set of uins; the mismatch
// count equals that set's request count exactly, and `meshgate migrate
// diffs` lists them. Then the shadow stalls (its handler blocks): the
// primary keeps answering, 0 errors, and the shadow copies are dropped or
// time out, counted.
func TestMigrateShadowDiff(t *testing.T) {
	bin := harness.MeshgateBin(t)
	_, legacyAddr := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	bad := map[uint64]bool{7: true, 77: true, 177: true}
	var stall atomic.Bool
	shadowAddr := rawService(t, func(ctx context.Context, _ string, uin uint64, body []byte) []byte {
		if stall.Load() {
			<-ctx.Done()
			return nil
		}
		if bad[uin] {
			return []byte("DIFF")
		}
		return bytes.ToUpper(body)
	})
	cfg := func(queue, conc int) string {
		return fmt.Sprintf(`
listeners:
  - name: mgp
    kind: private
    address: 127.0.0.1:0
    routes:
      - cmd: 2
        upstream: legacy
        split: {name: up, backends: [{upstream: legacy}]}
        shadow: {upstream: shadowsvc, method: /shadow.Svc/Upper, timeout: 2s, queue: %d, concurrency: %d}
  - name: grpc
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - method: /legacy.Legacy/Upper
        cmd: 2
        upstream: legacy
        split: {name: gup, backends: [{upstream: legacy}]}
        shadow: {upstream: shadowsvc, queue: 65536}
      - method: /shadow.Svc/Upper
        upstream: shadowsvc
        split: {name: pup, backends: [{upstream: shadowsvc}]}
        shadow: {upstream: legacy, cmd: 2, queue: 65536}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q]}
  - {name: shadowsvc, protocol: grpc, endpoints: [%q]}
`, queue, conc, legacyAddr, shadowAddr)
	}
	mg := harness.StartMeshgate(t, cfg(65536, 16), harness.WaitReady(15*time.Second))
	admin, priv, gaddr := mg.Admin(), mg.Addr("mgp"), mg.Addr("grpc")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := testkit.LegacyClient(t, priv, legacy.ClientOptions{Conns: 2})

	// send n requests over 8 workers; uin = 1 + i%500; returns primary errors and max latency
	cc := testkit.Client(t, gaddr)
	viaPrivate := func(uin uint64, body string) bool {
		f, err := cl.Call(ctx, legacy.CmdUppercase, uin, []byte(body), nil)
		return err == nil && f.Result == 0 && string(f.Body) == strings.ToUpper(body)
	}
	viaGRPC := func(method string) func(uin uint64, body string) bool {
		return func(uin uint64, body string) bool {
			var out []byte
			err := cc.Invoke(metadata.AppendToOutgoingContext(ctx, mapping.MDUIN, strconv.FormatUint(uin, 10)), method, []byte(body), &out)
			want := strings.ToUpper(body)
			if method == "/shadow.Svc/Upper" && bad[uin] {
				want = "DIFF" // the primary is the service that differs
			}
			return err == nil && string(out) == want
		}
	}
	call := viaPrivate
	send := func(n int) (int64, time.Duration, int) {
		var errs atomic.Int64
		var maxLat atomic.Int64
		var wg sync.WaitGroup
		badCount := 0
		for i := range n {
			if bad[uint64(1+i%500)] {
				badCount++
			}
		}
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					uin := uint64(1 + i%500)
					body := "u" + strconv.FormatUint(uin, 10)
					s := time.Now()
					ok := call(uin, body)
					lat := time.Since(s)
					for {
						m := maxLat.Load()
						if int64(lat) <= m || maxLat.CompareAndSwap(m, int64(lat)) {
							break
						}
					}
					if !ok {
						errs.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return errs.Load(), time.Duration(maxLat.Load()), badCount
	}
	const n = 4000
	errs, _, want := send(n)
	if errs != 0 {
		t.Fatalf("%d primary errors", errs)
	}
	var sh *migrate.ShadowStatus
	harness.Eventually(t, 20*time.Second, "every shadow copy compared", func() error {
		r := routeStatus(migrateStatus(t, admin), "up")
		if r == nil || r.Shadow == nil {
			return fmt.Errorf("no shadow status")
		}
		sh = r.Shadow
		var mm uint64
		for _, v := range sh.Mismatched {
			mm += v
		}
		if sh.Requests+sh.Dropped != n || sh.Matched+mm != sh.Requests {
			return fmt.Errorf("%+v", sh.Counts)
		}
		return nil
	})
	if sh.Dropped != 0 || sh.Mismatched["body"] != uint64(want) || sh.Matched != uint64(n-want) {
		t.Fatalf("shadow %+v, want %d body mismatches (the bad uins' requests), 0 dropped", sh.Counts, want)
	}
	t.Logf("shadow: %d requests, %d matched, %d body mismatches (= the %d requests of the bad uins)", sh.Requests, sh.Matched, sh.Mismatched["body"], want)
	out := runCLI(t, bin, "migrate", "diffs", "-admin", admin, "-route", "up", "-n", "5")
	if !strings.Contains(out, " body uin=") || strings.Contains(out, "no shadow mismatches") {
		t.Fatalf("migrate diffs:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "uin="); i >= 0 {
			u, _ := strconv.ParseUint(strings.Fields(line[i+4:])[0], 10, 64)
			if !bad[u] {
				t.Fatalf("diff for uin %d, not a bad uin:\n%s", u, out)
			}
		}
	}

	// The same from the gRPC side: gRPC→private primary with a gRPC shadow,
	// and gRPC→gRPC primary with a private shadow (legacy server).
	for _, c := range []struct{ route, method string }{{"gup", "/legacy.Legacy/Upper"}, {"pup", "/shadow.Svc/Upper"}} {
		call = viaGRPC(c.method)
		const m = 1000
		errs, _, want := send(m)
		if errs != 0 {
			t.Fatalf("%s: %d primary errors", c.route, errs)
		}
		harness.Eventually(t, 20*time.Second, c.route+": every shadow copy compared", func() error {
			r := routeStatus(migrateStatus(t, admin), c.route)
			if r == nil || r.Shadow == nil {
				return fmt.Errorf("no shadow status")
			}
			s := r.Shadow
			if s.Requests != m || s.Matched+s.Mismatched["body"] != m || s.Dropped != 0 {
				return fmt.Errorf("%+v", s.Counts)
			}
			if s.Mismatched["body"] != uint64(want) {
				t.Fatalf("%s: shadow %+v, want %d body mismatches", c.route, s.Counts, want)
			}
			return nil
		})
		t.Logf("%s: %d requests, %d body mismatches (= the bad uins' requests)", c.route, m, want)
	}
	call = viaPrivate

	// The shadow stalls; a small queue; the primary is untouched.
	stall.Store(true)
	mg.Reload(cfg(8, 2))
	if _, v, _ := harness.HTTPGet(mg.AdminURL("/config")); !strings.Contains(v, `"queue": 8`) {
		t.Fatal("/config does not show the reloaded shadow queue")
	}
	base := *sh
	errs, maxLat, _ := send(2000)
	if errs != 0 {
		t.Fatalf("%d primary errors with the shadow stalled", errs)
	}
	if maxLat >= 2*time.Second {
		t.Fatalf("a primary reply took %v (the shadow timeout is 2s): the shadow delayed the primary", maxLat)
	}
	harness.Eventually(t, 10*time.Second, "stalled shadow counted", func() error {
		r := routeStatus(migrateStatus(t, admin), "up")
		s := r.Shadow
		if s.Dropped-base.Dropped == 0 || s.Mismatched["timeout"] == 0 {
			return fmt.Errorf("%+v", s.Counts)
		}
		sh = s
		return nil
	})
	t.Logf("stalled shadow: primary 0 errors, max primary latency %v; shadow dropped %d, timeouts %d", maxLat.Round(time.Millisecond), sh.Dropped-base.Dropped, sh.Mismatched["timeout"])
	_, _ = io.Discard.Write(nil)
}
