package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/envoyproc"
)

// Options configure a suite run.
type Options struct {
	// Scenarios to run, in display order; empty = all.
	Scenarios []string
	// Params are the load points; every scenario runs at each.
	Params []Params
	// Repeats per scenario and load point (median and spread reported).
	Repeats int
	// Drain bounds the wait for in-flight replies after a measurement.
	Drain time.Duration
	// MeshGate is the product binary (meshgate): MeshGate runs as
	// `MeshGate run -c FILE`. Required for S3, S4, S6.
	MeshGate string
	// Binary is the tools binary (meshgate-dev): unless InProcServers or
	// empty, the backend servers run as `Binary bench serve`.
	Binary string
	// InProcServers runs the legacy and gRPC backend servers as goroutines
	// of this process instead of subprocesses (their CPU is then
	// attributed to the bench process).
	InProcServers bool
	// EnvoyBin is the Envoy binary (S1, S1w, S2, S4).
	EnvoyBin string
	// EnvoyConcurrency is each Envoy's --concurrency (worker threads).
	EnvoyConcurrency int
	// Wasm is the MGP proxy-wasm filter (S1w); "" skips S1w.
	Wasm string
	// WorkDir holds bootstraps, configs, certificates and logs; "" = a
	// temporary directory removed afterwards.
	WorkDir string
	// Log receives progress and component logs at Debug.
	Log *slog.Logger
	// IdleConns > 0 measures, per scenario with an MGP or gRPC client and
	// before any load, each process's idle RSS and its RSS with IdleConns
	// idle client connections open (bytes per idle connection).
	IdleConns int
	// Progress, when set, receives one line per measurement.
	Progress io.Writer
	// Resident is which topologies run while one is measured:
	// ResidentOne (the default) starts a scenario's topology for its load
	// points in each repeat and stops it afterwards, so only the measured
	// path's processes are on the machine, as in a pod; ResidentAll starts
	// every topology first and keeps them all up for the whole run.
	Resident string
}

// Resident modes (Options.Resident).
const (
	ResidentOne = "one"
	ResidentAll = "all"
)

// Scenario is one path through the system.
type Scenario struct {
	ID    string
	Title string
	// Needs lists what the scenario requires: "envoy", "wasm", "binary".
	Needs []string
	// Proxy is the role of the proxy under test ("" = none or several):
	// its CPU, context switches and RSS are the hop's cost.
	Proxy string
	setup func(ctx context.Context, e *env, t *topology) (*topology, error)
}

// topology is a running scenario: its processes and how to dial it.
type topology struct {
	id      string // scenario id, names per-scenario files
	procs   []Proc
	dial    func(conns int) (Client, error)
	closers []func() error // run in reverse order
	envoys  map[string]*envoyproc.Envoy
	notes   []string
	// shadowAdmin is MeshGate's admin address when the scenario shadows:
	// its shadow counters are read around every measurement.
	shadowAdmin string
}

func (t *topology) close() error {
	var errs []error
	for i := len(t.closers) - 1; i >= 0; i-- {
		errs = append(errs, t.closers[i]())
	}
	return errors.Join(errs...)
}

// Scenarios returns every scenario in display order.
func Scenarios() []Scenario {
	return []Scenario{
		{ID: "S0", Title: "legacy direct", setup: setupS0},
		{ID: "S1", Title: "via Envoy tcp_proxy", Needs: []string{"envoy"}, Proxy: RoleEnvoyA, setup: setupS1(false)},
		{ID: "S1w", Title: "via Envoy + MGP wasm", Needs: []string{"envoy", "wasm"}, Proxy: RoleEnvoyA, setup: setupS1(true)},
		{ID: "S2", Title: "2 Envoys, mTLS", Needs: []string{"envoy"}, setup: setupS2},
		{ID: "S3", Title: "MeshGate priv→gRPC", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupS3},
		{ID: "S3g", Title: "S3, grpc-go upstream client", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupS3g},
		{ID: "S4", Title: "S3 + 2 Envoys mTLS", Needs: []string{"binary", "envoy"}, setup: setupS4},
		{ID: "S5", Title: "grpc-go direct", setup: setupS5},
		{ID: "S6", Title: "MeshGate gRPC→priv", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupS6},
		{ID: "S6g", Title: "S6, grpc-go listener server", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupS6g},
		{ID: "EL7", Title: "Envoy L7 gRPC proxy", Needs: []string{"envoy"}, Proxy: RoleEnvoyA, setup: setupEL7},
		{ID: "HJ", Title: "HTTP/1.1 JSON direct", setup: setupHJ},
		{ID: "EJT", Title: "Envoy JSON→gRPC transcoder", Needs: []string{"envoy"}, Proxy: RoleEnvoyA, setup: setupEJT},
		{ID: "MPP", Title: "MeshGate priv→priv", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupMPP},
		{ID: "MGG", Title: "MeshGate gRPC→gRPC", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupMGG},
		{ID: "MPPs", Title: "MPP + 100 % shadow", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupMPPs},
		{ID: "MGGs", Title: "MGG + 100 % shadow", Needs: []string{"binary"}, Proxy: RoleMeshGate, setup: setupMGGs},
	}
}

// ErrUnknownScenario reports a scenario id that does not exist.
var ErrUnknownScenario = errors.New("bench: unknown scenario")

// SelectScenarios returns the scenarios named in ids (all when empty), in
// display order.
func SelectScenarios(ids []string) ([]Scenario, error) {
	all := Scenarios()
	if len(ids) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, id := range ids {
		found := false
		for _, s := range all {
			if strings.EqualFold(s.ID, strings.TrimSpace(id)) {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w %q", ErrUnknownScenario, id)
		}
	}
	for _, s := range all {
		for _, id := range ids {
			if strings.EqualFold(s.ID, strings.TrimSpace(id)) {
				out = append(out, s)
				break
			}
		}
	}
	return out, nil
}

// env is what scenario setups share.
type env struct {
	opts  Options
	dir   string
	log   *slog.Logger
	certs *certFiles
}

// skipReason says why s cannot run with these options ("" = it can).
func (o *Options) skipReason(s Scenario) string {
	for _, n := range s.Needs {
		switch n {
		case "envoy":
			if o.EnvoyBin == "" {
				return "no envoy (set ENVOY_BIN or put envoy on PATH)"
			}
		case "wasm":
			if o.Wasm == "" {
				return "no wasm (build with make wasm or set MESHGATE_WASM)"
			}
			if _, err := os.Stat(o.Wasm); err != nil {
				return "no wasm (" + o.Wasm + " missing)"
			}
		case "binary":
			if o.MeshGate == "" {
				return "no meshgate binary (build it with make build, or pass -meshgate)"
			}
		}
	}
	return ""
}

func (o *Options) defaults() {
	if o.Repeats < 1 {
		o.Repeats = 1
	}
	if o.Drain <= 0 {
		o.Drain = 2 * time.Second
	}
	if o.EnvoyConcurrency <= 0 {
		o.EnvoyConcurrency = 1
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Params) == 0 {
		o.Params = []Params{{Rate: 1000, Conns: 1, Payload: 1024, Duration: 10 * time.Second, Warmup: 2 * time.Second}}
	}
	if o.Resident == "" {
		o.Resident = ResidentOne
	}
}

// ErrBadOption reports an Options field with a value the suite does not
// know.
var ErrBadOption = errors.New("bench: bad option")

// RunSuite runs the suite and returns the finished report. A scenario that
// cannot start or measure is reported with its error (and the run goes
// on); Run itself fails only for bad options or a cancelled ctx.
func RunSuite(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if opts.Resident != ResidentOne && opts.Resident != ResidentAll {
		return nil, fmt.Errorf("%w: Resident %q (want %q or %q)", ErrBadOption, opts.Resident, ResidentOne, ResidentAll)
	}
	scs, err := SelectScenarios(opts.Scenarios)
	if err != nil {
		return nil, err
	}
	dir := opts.WorkDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "meshgate-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e := &env{opts: opts, dir: dir, log: opts.Log}
	rep := &Report{Started: time.Now().UTC(), Machine: ThisMachine(), Repeats: opts.Repeats}
	rep.Notes = append(rep.Notes, methodNotes(&opts)...)
	// Measured repeat-major: each repeat runs every load point of every
	// scenario back to back, so a burst of background load on a shared
	// machine spreads over the scenarios instead of landing on one
	// scenario's repeats. With ResidentAll every topology is started
	// first and stays up; with ResidentOne a topology runs only while its
	// own load points are measured (and while its idle memory is read).
	one := opts.Resident == ResidentOne
	var lives []*live
	defer func() {
		for _, l := range lives {
			l.down(e)
		}
	}()
	for _, sc := range scs {
		l, failed := setupScenario(ctx, e, sc, rep, !one)
		rep.Results = append(rep.Results, failed...)
		if l != nil {
			lives = append(lives, l)
		}
		if ctx.Err() != nil {
			break
		}
	}
	// idle reads l's idle memory (a topology before any load) when the
	// options ask for it and l has a single proxy with an MGP or gRPC
	// client.
	idle := func(l *live) {
		if k := clientKind[l.sc.ID]; opts.IdleConns <= 0 || l.sc.Proxy == "" || (k != "mgp" && k != "grpc") || ctx.Err() != nil {
			return
		}
		ir := measureIdle(ctx, e, l, opts.IdleConns)
		rep.Idle = append(rep.Idle, ir)
		if ir.Error != "" {
			e.progress("%-4s idle: %s", l.sc.ID, ir.Error)
		} else if p := ir.proc(l.sc.Proxy); p != nil {
			e.progress("%-4s idle: %s RSS %s, %s per idle %s connection (%d open)", l.sc.ID, p.Role, mb(p.RSSIdle), kb(p.BytesPerConn), ir.Kind, ir.Conns)
		}
	}
	if !one {
		for _, l := range lives {
			idle(l)
		}
	}
	for i := 0; i < opts.Repeats && ctx.Err() == nil; i++ {
		if one {
			// Scenario-major inside the repeat: one start per topology.
			for _, l := range lives {
				if !l.pending() || ctx.Err() != nil || !l.upOrFail(ctx, e, rep) {
					continue
				}
				if i == 0 {
					idle(l) // fresh, before any load
				}
				// A fresh process's start-up tail (MeshGate's second
				// trim at 2 s) stays out of the measured window.
				waitStartedFor(ctx, l.topo.procs, settleAfterStart)
				for pi, p := range opts.Params {
					if r := l.results[pi]; r.Error == "" && ctx.Err() == nil {
						beforeMeasure(l, lives)
						measureOnce(ctx, e, l, p, r, i)
					}
				}
				l.down(e)
			}
			continue
		}
		for pi, p := range opts.Params {
			for _, l := range lives {
				if r := l.results[pi]; r.Error == "" && ctx.Err() == nil {
					beforeMeasure(l, lives)
					measureOnce(ctx, e, l, p, r, i)
				}
			}
		}
	}
	for _, l := range lives {
		for _, r := range l.results {
			rep.Results = append(rep.Results, *r)
		}
	}
	// Display order: by load point, then scenario.
	slices.SortStableFunc(rep.Results, func(a, b Result) int {
		pa, pb := a.Params, b.Params
		switch {
		case pa.Payload != pb.Payload:
			return pa.Payload - pb.Payload
		case pa.InFlight != pb.InFlight:
			return pa.InFlight - pb.InFlight
		case pa.Rate != pb.Rate:
			if pa.Rate < pb.Rate {
				return -1
			}
			return 1
		case pa.Conns != pb.Conns:
			return pa.Conns - pb.Conns
		}
		return scenarioColor(a.Scenario, 99) - scenarioColor(b.Scenario, 99)
	})
	rep.Finish()
	return rep, ctx.Err()
}

func methodNotes(o *Options) []string {
	n := []string{
		"open loop: one scheduler fires request i at start+i/rate round-robin over the connections, never waiting for replies; latency recorded from the intended send time (CO-free, shown) and the actual send time",
		"repeat-major order: each repeat measures every scenario and load point back to back (a fresh client per measurement), so background bursts spread over scenarios",
		"HdrHistogram 1 µs resolution, 3 significant digits; warm-up requests discarded; percentiles are medians over repeats, spread = min–max",
		fmt.Sprintf("every Envoy is a real subprocess (--concurrency %d); MeshGate is the real product binary as a subprocess (`meshgate run -c FILE`)", o.EnvoyConcurrency),
	}
	if o.Resident == ResidentAll {
		n = append(n, "resident all: every topology starts first and stays up for the whole run; a scenario is measured with the others' processes idle beside it")
	} else {
		n = append(n, "resident one: a scenario's topology starts for its load points in each repeat (measured once every process is 3 s old) and stops after them, so only the measured path's processes are on the machine")
	}
	if o.InProcServers {
		n = append(n, "backend servers (legacy MGP, grpc-go demo.Echo) run in the bench process: their CPU/RSS is inside 'bench'")
	} else {
		n = append(n, "backend servers (legacy MGP, grpc-go demo.Echo) run as `meshgate-dev bench serve` subprocesses ('server'); 'bench' is the load generator alone")
	}
	n = append(n, "bg cores = CPU the rest of the machine used during the window (/proc/stat busy minus this scenario's processes): a noise indicator; results with bg well above 0 were measured on a busy machine")
	n = append(n, "CPU-s/1k = (utime+stime delta over the measured window from /proc/<pid>/stat) / (completed requests/1000); RSS = VmRSS at the end")
	return n
}

// live is a runnable scenario, its topology when up, and its results per
// load point (index into Options.Params).
type live struct {
	sc      Scenario
	topo    *topology // nil while down
	results []*Result
}

// up starts l's topology.
func (l *live) up(ctx context.Context, e *env, rep *Report) error {
	setupCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	topo, err := l.sc.setup(setupCtx, e, &topology{id: l.sc.ID})
	if err != nil {
		return err
	}
	for _, note := range topo.notes {
		if !slices.Contains(rep.Notes, note) {
			rep.Notes = append(rep.Notes, note)
		}
	}
	l.topo = topo
	return nil
}

// upOrFail starts l's topology, or marks every result of l failed (or
// skipped) with why and reports false.
func (l *live) upOrFail(ctx context.Context, e *env, rep *Report) bool {
	err := l.up(ctx, e, rep)
	if err == nil {
		return true
	}
	if why := isSkip(err); why != "" {
		l.mark(why, "")
		e.progress("%-4s skipped: %s", l.sc.ID, why)
	} else {
		l.mark("", "setup: "+err.Error())
		e.progress("%-4s setup failed: %v", l.sc.ID, err)
	}
	return false
}

// mark sets skipped, or (when skipped is "") errMsg, on every result of
// l not failed already.
func (l *live) mark(skipped, errMsg string) {
	for _, r := range l.results {
		if skipped != "" {
			r.Skipped = skipped
		} else if r.Error == "" {
			r.Error = errMsg
		}
	}
}

// down stops l's topology if it is up.
func (l *live) down(e *env) {
	if l.topo == nil {
		return
	}
	if err := l.topo.close(); err != nil {
		e.log.Warn("bench: teardown", "scenario", l.sc.ID, "err", err)
	}
	l.topo = nil
}

// pending reports whether a load point of l is still to be measured.
func (l *live) pending() bool {
	for _, r := range l.results {
		if r.Error == "" && r.Skipped == "" {
			return true
		}
	}
	return false
}

// testHookMeasure, when set by a test, is called before every measurement
// with the measured scenario and the scenarios whose topology is up.
var testHookMeasure func(measured string, up []string)

// beforeMeasure calls testHookMeasure.
func beforeMeasure(l *live, lives []*live) {
	if testHookMeasure == nil {
		return
	}
	var up []string
	for _, o := range lives {
		if o.topo != nil {
			up = append(up, o.sc.ID)
		}
	}
	testHookMeasure(l.sc.ID, up)
}

// setupScenario returns sc as a live scenario, started when start is set,
// or its results marked skipped or failed.
func setupScenario(ctx context.Context, e *env, sc Scenario, rep *Report, start bool) (*live, []Result) {
	l := &live{sc: sc}
	for _, p := range e.opts.Params {
		l.results = append(l.results, &Result{Scenario: sc.ID, Title: sc.Title, Params: p})
	}
	if why := e.opts.skipReason(sc); why != "" {
		e.progress("%-4s skipped: %s", sc.ID, why)
		l.mark(why, "")
		return nil, l.values()
	}
	if start && !l.upOrFail(ctx, e, rep) {
		return nil, l.values()
	}
	return l, nil
}

// values returns copies of l's results.
func (l *live) values() []Result {
	out := make([]Result, len(l.results))
	for i, r := range l.results {
		out[i] = *r
	}
	return out
}

// measureOnce dials a fresh client at p and measures one repeat into r.
func measureOnce(ctx context.Context, e *env, l *live, p Params, r *Result, rep int) {
	procs := append([]Proc{{Role: RoleBench, PID: os.Getpid(), Note: "load generator"}}, l.topo.procs...)
	if e.opts.InProcServers {
		procs[0].Note = "load generator + in-process servers"
	}
	c, err := l.topo.dial(p.Conns)
	if err != nil {
		r.Error = "dial: " + err.Error()
		e.progress("%-4s %s: %v", l.sc.ID, p, err)
		return
	}
	defer func() {
		if err := c.Close(); err != nil {
			e.log.Debug("bench: client close", "err", err)
		}
	}()
	var before ShadowCounts
	if a := l.topo.shadowAdmin; a != "" {
		// Settled first: the dial may have sent a request whose copy is
		// still being compared.
		if before, err = settleShadow(ctx, a, e.opts.Drain); err != nil {
			r.Error = err.Error()
			e.progress("%-4s %s #%d: %v", l.sc.ID, p, rep+1, err)
			return
		}
	}
	run, err := Measure(ctx, c, p, procs, e.opts.Drain)
	if err == nil && l.topo.shadowAdmin != "" {
		var after ShadowCounts
		if after, err = settleShadow(ctx, l.topo.shadowAdmin, e.opts.Drain); err == nil {
			d := after.sub(before)
			run.Shadow = &d
			e.progress("%-4s %-26s #%d  %s", l.sc.ID, p, rep+1, d)
		}
	}
	if err != nil {
		r.Error = err.Error()
		e.progress("%-4s %s #%d: %v", l.sc.ID, p, rep+1, err)
		return
	}
	run.Repeat = rep
	r.Runs = append(r.Runs, run)
	e.progress("%-4s %-26s #%d  p50 %s  p99 %s  ms  %6.0f rps  %d errors  bg %.2f cores", l.sc.ID, p, rep+1,
		ms(run.Intended.P50), ms(run.Intended.P99), run.AchievedRPS, run.Errors, run.Background)
}

func (e *env) progress(format string, args ...any) {
	if e.opts.Progress != nil {
		fmt.Fprintf(e.opts.Progress, format+"\n", args...)
	}
}
