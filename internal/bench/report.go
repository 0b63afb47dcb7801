package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine describes the host a report was measured on.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
}

// ThisMachine reads nproc, the CPU model (/proc/cpuinfo) and the kernel
// release (/proc/sys/kernel/osrelease).
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// ProcSummary is one process's resource use across repeats.
type ProcSummary struct {
	Role     string `json:"role"`
	Note     string `json:"note,omitempty"`
	CPUPer1k Spread `json:"cpu_s_per_1k"`
	RSSBytes int64  `json:"rss_bytes_max"`
	// CtxPerReq is context switches per completed request.
	CtxPerReq Spread `json:"ctx_switches_per_request"`
	// ReqPerCPUs is completed requests per CPU-second of this process
	// (1000 / CPUPer1k): the efficiency at saturation in closed loop.
	ReqPerCPUs Spread `json:"requests_per_cpu_s"`
}

// Ratios compares a result with a reference scenario of the same run and
// parameters (medians of the intended-time percentiles).
type Ratios struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Result is one scenario at one parameter set.
type Result struct {
	Scenario string        `json:"scenario"`
	Title    string        `json:"title"`
	Params   Params        `json:"params"`
	Skipped  string        `json:"skipped,omitempty"`
	Error    string        `json:"error,omitempty"`
	Runs     []Run         `json:"runs,omitempty"`
	Intended LatencySpread `json:"intended"`
	Actual   LatencySpread `json:"actual"`
	RPS      Spread        `json:"achieved_rps"`
	OK       int64         `json:"ok"`
	Errors   int64         `json:"errors"`
	Procs    []ProcSummary `json:"procs,omitempty"`
	VsS0     Ratios        `json:"vs_s0"`
	VsS5     Ratios        `json:"vs_s5"`
	// Background is the spread of the CPU (cores) the rest of the
	// machine used during the runs.
	Background Spread `json:"background_cores"`
	// Shadow sums the runs' shadow counters (shadow scenarios only).
	Shadow *ShadowCounts `json:"shadow,omitempty"`
}

// summarize fills the aggregate fields from Runs.
func (r *Result) summarize() {
	var in, act []Latency
	var rps, bg []float64
	r.OK, r.Errors, r.Shadow = 0, 0, nil
	procs := map[string]*ProcSummary{}
	var order []string
	cpu := map[string][]float64{}
	ctxs := map[string][]float64{}
	eff := map[string][]float64{}
	for _, run := range r.Runs {
		in = append(in, run.Intended)
		act = append(act, run.Actual)
		rps = append(rps, run.AchievedRPS)
		bg = append(bg, run.Background)
		r.OK += run.OK
		r.Errors += run.Errors
		if run.Shadow != nil {
			sum := run.Shadow.add(ShadowCounts{})
			if r.Shadow != nil {
				sum = r.Shadow.add(*run.Shadow)
			}
			r.Shadow = &sum
		}
		for _, p := range run.Procs {
			ps := procs[p.Role]
			if ps == nil {
				ps = &ProcSummary{Role: p.Role, Note: p.Note}
				procs[p.Role] = ps
				order = append(order, p.Role)
			}
			cpu[p.Role] = append(cpu[p.Role], p.CPUPer1k)
			ctxs[p.Role] = append(ctxs[p.Role], p.CtxPerReq)
			if p.CPUPer1k > 0 {
				eff[p.Role] = append(eff[p.Role], 1000/p.CPUPer1k)
			}
			ps.RSSBytes = max(ps.RSSBytes, p.RSSBytes)
		}
	}
	r.Intended = SpreadLatencies(in)
	r.Actual = SpreadLatencies(act)
	r.RPS = SpreadOf(rps)
	r.Background = SpreadOf(bg)
	r.Procs = r.Procs[:0]
	for _, role := range order {
		ps := procs[role]
		ps.CPUPer1k = SpreadOf(cpu[role])
		ps.CtxPerReq = SpreadOf(ctxs[role])
		ps.ReqPerCPUs = SpreadOf(eff[role])
		r.Procs = append(r.Procs, *ps)
	}
}

func (r *Result) ok() bool { return r.Skipped == "" && r.Error == "" && len(r.Runs) > 0 }

// Target is one performance goal evaluated on a report.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit"`
	// Status is PASS, MISS or N/A (when the run lacks the scenarios).
	Status string `json:"status"`
	Why    string `json:"why,omitempty"`
}

// Report is a whole suite run.
type Report struct {
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	Repeats int       `json:"repeats"`
	Results []Result  `json:"results"`
	Targets []Target  `json:"targets"`
	// Hops are paired differences between scenarios (per repeat).
	Hops []Hop `json:"hops,omitempty"`
	// Idle is the idle-connection memory per scenario.
	Idle     []IdleResult `json:"idle,omitempty"`
	Notes    []string     `json:"notes"`
	Commands []string     `json:"command,omitempty"`
}

// find returns the result of scenario id at params p.
func (rep *Report) find(id string, p Params) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Scenario == id && r.Params.same(p) {
			return r
		}
	}
	return nil
}

// Finish computes the aggregates, the ratios to S0 and S5 of the same run
// and parameters, and the targets.
func (rep *Report) Finish() {
	for i := range rep.Results {
		rep.Results[i].summarize()
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		if !r.ok() {
			continue
		}
		m := r.Intended.Median()
		if s0 := rep.find("S0", r.Params); s0 != nil && s0.ok() {
			b := s0.Intended.Median()
			r.VsS0 = Ratios{P50: Ratio(m.P50, b.P50), P99: Ratio(m.P99, b.P99)}
		}
		if s5 := rep.find("S5", r.Params); s5 != nil && s5.ok() {
			b := s5.Intended.Median()
			r.VsS5 = Ratios{P50: Ratio(m.P50, b.P50), P99: Ratio(m.P99, b.P99)}
		}
	}
	rep.Hops = rep.computeHops()
	rep.Targets = rep.evalTargets()
}

// Target parameters: 1 KB at 1 000 rps (the first matching connection
// count measured, 1 preferred).
const (
	targetRate    = 1000
	targetPayload = 1024
)

func (rep *Report) targetResult(id string) *Result {
	var best *Result
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Scenario != id || !r.ok() || r.Params.Closed() || r.Params.Rate != targetRate || r.Params.Payload != targetPayload {
			continue
		}
		if best == nil || r.Params.Conns < best.Params.Conns {
			best = r
		}
	}
	return best
}

func judge(t Target, ok bool) Target {
	if ok {
		t.Status = "PASS"
	} else {
		t.Status = "MISS"
	}
	return t
}

// Seed is the seed latency table the suite reproduces (ms).
var Seed = []struct {
	Path     string
	Avg, P95 float64
}{
	{"on-prem direct", 0.38, 0.67},
	{"K8s pod-to-pod", 0.52, 0.90},
	{"Istio + private TCP", 0.62, 1.26},
	{"Istio + gRPC", 6.23, 14.62},
}

func ms(us float64) string {
	if us == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", us/1000)
}

func ratio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

func mb(b int64) string { return fmt.Sprintf("%.0fM", float64(b)/(1<<20)) }

// WriteTable prints the human-readable report.
func (rep *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "MeshGate latency suite — %d CPU %s, kernel %s, %s; %d repeat(s), median shown\n",
		rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.Kernel, rep.Machine.GoVersion, rep.Repeats)
	fmt.Fprintf(w, "latency in ms from the INTENDED send time (open loop, coordinated-omission free); ratios on p50/p99 vs S0 and S5 of this run\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tload\tavg\tp50\tp90\tp95\tp99\tp99.9\tmax\trps\terrors\tp50/S0\tp99/S0\tp50/S5\tp99/S5\tbg cores\t")
	var last Params
	for i, r := range rep.Results {
		if i > 0 && r.Params != last {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t")
		}
		last = r.Params
		if !r.ok() {
			continue
		}
		m := r.Intended.Median()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t%s\t%s\t%s\t%s\t%.2f\t\n",
			r.Scenario, r.Params, ms(m.Avg), ms(m.P50), ms(m.P90), ms(m.P95), ms(m.P99), ms(m.P999), ms(m.Max),
			r.RPS.Median, r.Errors, ratio(r.VsS0.P50), ratio(r.VsS0.P99), ratio(r.VsS5.P50), ratio(r.VsS5.P99), r.Background.Median)
	}
	_ = tw.Flush()
	for _, r := range rep.Results {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(w, "%s  %s  skipped: %s\n", r.Scenario, r.Params, r.Skipped)
		case r.Error != "":
			fmt.Fprintf(w, "%s  %s  ERROR: %s\n", r.Scenario, r.Params, firstLine(r.Error))
		}
	}

	fmt.Fprintf(w, "\nfrom the ACTUAL send time, and spread (min–max over repeats) of the intended-time p50 / p99:\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tload\tavg\tp50\tp99\tp99.9\tmax\tp50 spread\tp99 spread\t")
	for _, r := range rep.Results {
		if !r.ok() {
			continue
		}
		a := r.Actual.Median()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s–%s\t%s–%s\t\n", r.Scenario, r.Params,
			ms(a.Avg), ms(a.P50), ms(a.P99), ms(a.P999), ms(a.Max),
			ms(r.Intended.P50.Min), ms(r.Intended.P50.Max), ms(r.Intended.P99.Min), ms(r.Intended.P99.Max))
	}
	_ = tw.Flush()

	fmt.Fprintf(w, "\nper process: CPU seconds per 1k requests / context switches per request (medians) / RSS:\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rep.Results {
		if !r.ok() {
			continue
		}
		var parts []string
		for _, p := range r.Procs {
			parts = append(parts, fmt.Sprintf("%s %.3f / %.1f / %s", p.Role, p.CPUPer1k.Median, p.CtxPerReq.Median, mb(p.RSSBytes)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Scenario, r.Params, strings.Join(parts, "   "))
	}
	_ = tw.Flush()
	rep.writeHopsTable(w)
	rep.writeShadowTable(w, false)

	fmt.Fprintf(w, "\nseed table (ms, avg / p95): ")
	for i, s := range Seed {
		if i > 0 {
			fmt.Fprint(w, "; ")
		}
		fmt.Fprintf(w, "%s %.2f / %.2f", s.Path, s.Avg, s.P95)
	}
	fmt.Fprintf(w, "\n\ntargets:\n")
	for _, t := range rep.Targets {
		val := "-"
		if t.Status != "N/A" {
			val = fmt.Sprintf("%.3f %s", t.Value, t.Unit)
		}
		fmt.Fprintf(w, "  %-4s  %-66s  %-18s %s\n", t.Status, t.Name, val, t.Why)
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
