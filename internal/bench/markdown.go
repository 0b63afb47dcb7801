package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes the report's tables as GitHub markdown (for
// BENCHMARKS.md): latency medians with the p50/p99 spread, ratios, the
// per-process CPU and RSS, and the targets.
func (rep *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Machine: %d CPU, %s, kernel %s, %s. %d repeat(s) per point; median shown, [min–max] spread.\n\n",
		rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.Kernel, rep.Machine.GoVersion, rep.Repeats)
	fmt.Fprintln(w, "| scenario | load | avg | p50 [spread] | p90 | p95 | p99 [spread] | p99.9 | max | rps | errors | p50/S0 | p99/S0 | p50/S5 | p99/S5 | bg cores |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rep.Results {
		if !r.ok() {
			why := "skipped: " + r.Skipped
			if r.Skipped == "" {
				why = "ERROR: " + firstLine(r.Error)
			}
			fmt.Fprintf(w, "| %s %s | %s | %s |||||||||||||\n", r.Scenario, r.Title, r.Params, mdEscape(why))
			continue
		}
		m := r.Intended.Median()
		fmt.Fprintf(w, "| %s %s | %s | %s | %s [%s–%s] | %s | %s | %s [%s–%s] | %s | %s | %.0f | %d | %s | %s | %s | %s | %.2f |\n",
			r.Scenario, r.Title, r.Params, ms(m.Avg), ms(m.P50), ms(r.Intended.P50.Min), ms(r.Intended.P50.Max),
			ms(m.P90), ms(m.P95), ms(m.P99), ms(r.Intended.P99.Min), ms(r.Intended.P99.Max), ms(m.P999), ms(m.Max),
			r.RPS.Median, r.Errors, ratio(r.VsS0.P50), ratio(r.VsS0.P99), ratio(r.VsS5.P50), ratio(r.VsS5.P99), r.Background.Median)
	}
	fmt.Fprintln(w, "\nLatency from the actual send time (median p50 / p99, ms) and per process CPU seconds per 1 000 requests / context switches per request / RSS:")
	fmt.Fprintln(w, "\n| scenario | load | actual p50 | actual p99 | processes: CPU-s/1k / ctx sw/req / RSS |")
	fmt.Fprintln(w, "|---|---|--:|--:|---|")
	for _, r := range rep.Results {
		if !r.ok() {
			continue
		}
		a := r.Actual.Median()
		var parts []string
		for _, p := range r.Procs {
			parts = append(parts, fmt.Sprintf("%s %.3f / %.1f / %s", p.Role, p.CPUPer1k.Median, p.CtxPerReq.Median, mb(p.RSSBytes)))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.Scenario, r.Params, ms(a.P50), ms(a.P99), strings.Join(parts, ", "))
	}
	rep.writeHopsMarkdown(w)
	rep.writeShadowTable(w, true)
	fmt.Fprintln(w, "\n| target | value | result | where |")
	fmt.Fprintln(w, "|---|--:|---|---|")
	for _, t := range rep.Targets {
		val := "-"
		if t.Status != "N/A" {
			val = fmt.Sprintf("%.3f %s", t.Value, t.Unit)
		}
		fmt.Fprintf(w, "| %s | %s | **%s** | %s |\n", t.Name, val, t.Status, mdEscape(t.Why))
	}
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
