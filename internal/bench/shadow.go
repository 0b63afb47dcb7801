package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The shadow scenarios are MPP and MGG with a 100 % shadow on the route
// (routes[].shadow, docs/migration.md) to a second backend of the same
// kind, so MPPs−MPP and MGGs−MGG (paired per repeat) are what mirroring
// every request costs the primary path:
//
//	MPPs  MGP client → MeshGate (private→private, shadow → 2nd legacy server) → legacy server
//	MGGs  grpc-go client → MeshGate (gRPC→gRPC, shadow → 2nd grpc-go server) → grpc-go server
//
// Around every measurement the suite reads MeshGate's shadow counters from
// its admin /metrics, so the report shows the shadow really ran.

// Shadow counter names (meshgate/shadow).
const (
	metricShadowRequests   = "meshgate_shadow_requests_total"
	metricShadowMatched    = "meshgate_shadow_matched_total"
	metricShadowMismatched = "meshgate_shadow_mismatched_total"
	metricShadowDropped    = "meshgate_shadow_dropped_total"
)

// ShadowCounts are MeshGate's shadow counters (summed over routes and
// mismatch kinds), or their increase over one measurement.
type ShadowCounts struct {
	// Requests are copies accepted for the shadow backend.
	Requests int64 `json:"requests"`
	// Matched and Mismatched are compared copies (Mismatched includes
	// shadow errors and timeouts).
	Matched    int64 `json:"matched"`
	Mismatched int64 `json:"mismatched"`
	// Dropped are copies dropped because the shadow queue was full.
	Dropped int64 `json:"dropped"`
}

// settled reports whether every accepted copy has been compared, and no
// more: MeshGate counts a copy as requested just after queueing it, so a
// worker may count it compared a moment before it is counted requested
// (on a loaded machine that moment can outlast a poll interval).
func (c ShadowCounts) settled() bool { return c.Matched+c.Mismatched == c.Requests }

func (c ShadowCounts) sub(b ShadowCounts) ShadowCounts {
	return ShadowCounts{Requests: c.Requests - b.Requests, Matched: c.Matched - b.Matched,
		Mismatched: c.Mismatched - b.Mismatched, Dropped: c.Dropped - b.Dropped}
}

func (c ShadowCounts) add(b ShadowCounts) ShadowCounts {
	return ShadowCounts{Requests: c.Requests + b.Requests, Matched: c.Matched + b.Matched,
		Mismatched: c.Mismatched + b.Mismatched, Dropped: c.Dropped + b.Dropped}
}

func (c ShadowCounts) String() string {
	return fmt.Sprintf("shadow requests %d, matched %d, mismatched %d, dropped %d", c.Requests, c.Matched, c.Mismatched, c.Dropped)
}

// ErrNoShadowMetrics reports a /metrics page without the shadow counters.
var ErrNoShadowMetrics = errors.New("bench: no " + metricShadowRequests + " in /metrics")

// ParseShadowCounts reads the shadow counters from a Prometheus text
// exposition, summing every series of each.
func ParseShadowCounts(r io.Reader) (ShadowCounts, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return ShadowCounts{}, fmt.Errorf("bench: parse /metrics: %w", err)
	}
	if fams[metricShadowRequests] == nil {
		return ShadowCounts{}, ErrNoShadowMetrics
	}
	sum := func(name string) int64 {
		var n float64
		if f := fams[name]; f != nil {
			for _, m := range f.GetMetric() {
				n += counterValue(m)
			}
		}
		return int64(n)
	}
	return ShadowCounts{
		Requests:   sum(metricShadowRequests),
		Matched:    sum(metricShadowMatched),
		Mismatched: sum(metricShadowMismatched),
		Dropped:    sum(metricShadowDropped),
	}, nil
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	if u := m.GetUntyped(); u != nil {
		return u.GetValue()
	}
	return 0
}

// scrapeShadow reads the shadow counters from MeshGate's admin address.
func scrapeShadow(ctx context.Context, admin string) (ShadowCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return ShadowCounts{}, err
	}
	req.Close = true // one scrape per measurement: no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ShadowCounts{}, fmt.Errorf("bench: scrape shadow counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ShadowCounts{}, fmt.Errorf("bench: scrape shadow counters: GET /metrics: %s", resp.Status)
	}
	return ParseShadowCounts(resp.Body)
}

// settleShadow polls the counters until every accepted copy has been
// compared (copies are mirrored after the primary answered, so the last
// ones may still be in flight when the measurement ends) and two reads in
// a row agree, or until wait passes; it returns the last counters read.
func settleShadow(ctx context.Context, admin string, wait time.Duration) (ShadowCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var (
		last ShadowCounts
		read bool // at least one scrape succeeded
	)
	for {
		c, err := scrapeShadow(ctx, admin)
		switch {
		case err == nil:
			// Settled and unchanged over one tick.
			if read && c.settled() && c == last {
				return c, nil
			}
			last, read = c, true
		case ctx.Err() == nil:
			return last, err
		case !read:
			return last, err
		}
		select {
		case <-ctx.Done():
			// Unsettled: the difference shows as requests > matched+mismatched.
			return last, nil
		case <-tick.C:
		}
	}
}

// meshGatePrivToPrivShadow is the MPPs config: MPP's route plus a 100 %
// shadow of cmd EchoCmd to a second legacy server.
func meshGatePrivToPrivShadow(admin, listen, legacyAddr, shadowAddr string) string {
	return echoConfig(admin, listen, config.KindPrivate, config.ProtoPrivate, legacyAddr, shadowAddr)
}

// meshGateGRPCToGRPCShadow is the MGGs config: MGG's route plus a 100 %
// shadow of demo.Echo/Echo to a second grpc-go server.
func meshGateGRPCToGRPCShadow(admin, listen, grpcAddr, shadowAddr string) string {
	return echoConfig(admin, listen, config.KindGRPC, config.ProtoGRPC, grpcAddr, shadowAddr)
}

// setupShadow starts two backends of kind, MeshGate with cfg(admin,
// listen, primary, shadow) validated by the product, and checks the
// shadow counters are exported.
func setupShadow(kind, name string, cfg func(admin, listen, primary, shadow string) string, lacks string) func(context.Context, *env, *topology) (*topology, error) {
	return func(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
		defer guard(t, &err)
		primary, err := e.startServer(ctx, t, kind)
		if err != nil {
			return nil, err
		}
		n := len(t.procs)
		shadow, err := e.startServer(ctx, t, kind)
		if err != nil {
			return nil, err
		}
		for i := n; i < len(t.procs); i++ {
			t.procs[i].Role = RoleShadowServer
		}
		admin, listen, err := e.startMeshGateAt(ctx, t, name, func(admin, listen string) string { return cfg(admin, listen, primary, shadow) }, lacks)
		if err != nil {
			return nil, err
		}
		// The admin listener may come up after the data listener.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			_, err := scrapeShadow(cctx, admin)
			if err == nil {
				break
			}
			if errors.Is(err, ErrNoShadowMetrics) {
				return nil, fmt.Errorf("bench: %s: %w", t.id, err)
			}
			select {
			case <-cctx.Done():
				return nil, fmt.Errorf("bench: %s: admin %s: %w", t.id, admin, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.shadowAdmin = admin
		t.notes = append(t.notes, "MPPs/MGGs: MPP/MGG plus a 100 % shadow (routes[].shadow, default concurrency 16, queue 128) to a second backend of the same kind ('shadow-server': its own subprocess, or in the bench process with -inproc-servers); MPPs−MPP and MGGs−MGG are paired per repeat; shadow counters are read from MeshGate's /metrics before and after each measurement (warm-up included), after waiting up to the drain time for the last copies to be compared")
		if kind == "grpc" {
			t.dial = e.grpcDial(listen)
		} else {
			t.dial = e.legacyDial(listen)
		}
		return t, nil
	}
}

var (
	setupMPPs = setupShadow("legacy", "meshgate-mpps", meshGatePrivToPrivShadow, "private→private with a private shadow")
	setupMGGs = setupShadow("grpc", "meshgate-mggs", meshGateGRPCToGRPCShadow, "gRPC→gRPC with a gRPC shadow")
)

// shadowResults returns the results that carry shadow counters.
func (rep *Report) shadowResults() []*Result {
	var out []*Result
	for i := range rep.Results {
		if r := &rep.Results[i]; r.ok() && r.Shadow != nil {
			out = append(out, r)
		}
	}
	return out
}

// shadowBase is the scenario each shadow scenario adds its shadow to.
var shadowBase = map[string]string{"MPPs": "MPP", "MGGs": "MGG"}

// shadowCPU returns the MeshGate CPU-s/1k of r's base scenario and of r
// (medians) and their difference paired per repeat, as text.
func (rep *Report) shadowCPU(r *Result) (base, with, delta string) {
	base, with, delta = "-", "-", "-"
	if ps := r.proc(RoleMeshGate); ps != nil {
		with = f3(ps.CPUPer1k.Median)
	}
	b := rep.find(shadowBase[r.Scenario], r.Params)
	if b == nil || !b.ok() {
		return
	}
	if ps := b.proc(RoleMeshGate); ps != nil {
		base = f3(ps.CPUPer1k.Median)
	}
	cpu := func(run Run) (float64, bool) {
		for _, p := range run.Procs {
			if p.Role == RoleMeshGate {
				return p.CPUPer1k, true
			}
		}
		return 0, false
	}
	byRep := map[int]float64{}
	for _, run := range b.Runs {
		if v, ok := cpu(run); ok {
			byRep[run.Repeat] = v
		}
	}
	var d []float64
	for _, run := range r.Runs {
		v, ok := cpu(run)
		if vb, okb := byRep[run.Repeat]; ok && okb {
			d = append(d, v-vb)
		}
	}
	if len(d) > 0 {
		sp := SpreadOf(d)
		delta = fmt.Sprintf("%+.3f [%+.3f–%+.3f]", sp.Median, sp.Min, sp.Max)
	}
	return
}

// writeShadowTable prints the shadow counters of the shadow scenarios and
// MeshGate's CPU with the shadow beside its base scenario's (text;
// markdown when md).
func (rep *Report) writeShadowTable(w io.Writer, md bool) {
	rs := rep.shadowResults()
	if len(rs) == 0 {
		return
	}
	if md {
		fmt.Fprintln(w, "\nShadow counters from MeshGate's /metrics (increase over all repeats, warm-up included): copies accepted (`meshgate_shadow_requests_total`), compared equal (`_matched_total`), different or failed (`_mismatched_total`), dropped with the queue full (`_dropped_total`), beside the primary's measured requests; and MeshGate's CPU-s per 1k requests without the shadow (base scenario), with it, and the difference paired per repeat (median [min–max]):")
		fmt.Fprintln(w, "\n| scenario | load | primary ok | shadow requests | matched | mismatched | dropped | MeshGate CPU-s/1k base | with shadow | Δ paired |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, r := range rs {
			s := r.Shadow
			b, c, d := rep.shadowCPU(r)
			fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %s | %s | %s |\n", r.Scenario, r.Params, r.OK, s.Requests, s.Matched, s.Mismatched, s.Dropped, b, c, d)
		}
		return
	}
	fmt.Fprintf(w, "\nshadow counters from MeshGate's /metrics (increase over all repeats, warm-up included; primary ok = measured requests only) and MeshGate CPU-s/1k without / with the shadow (Δ paired per repeat):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tload\tprimary ok\tshadow requests\tmatched\tmismatched\tdropped\tCPU-s/1k base\twith shadow\tΔ paired\t")
	for _, r := range rs {
		s := r.Shadow
		b, c, d := rep.shadowCPU(r)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.Scenario, r.Params, r.OK, s.Requests, s.Matched, s.Mismatched, s.Dropped, b, c, d)
	}
	_ = tw.Flush()
}
