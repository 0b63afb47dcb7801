package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// writeHopsTable prints the paired hop differences, the closed-loop
// saturation points and the idle memory (text).
func (rep *Report) writeHopsTable(w io.Writer) {
	if len(rep.Hops) > 0 {
		fmt.Fprintf(w, "\nhops: A−B paired per repeat (median [min–max], ms, intended time) and A's proxy per request:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "hop\tA−B\tload\tΔp50\tΔp99\tpairs\tproxy\tCPU-s/1k\tctx sw/req\tRSS\t")
		for _, h := range rep.Hops {
			fmt.Fprintf(tw, "%s\t%s−%s\t%s\t%s [%s–%s]\t%s\t%d\t%s\t%s\t%s\t%s\t\n", h.Name, h.A, h.B, h.Params,
				msSigned(h.P50.Median), msSigned(h.P50.Min), msSigned(h.P50.Max), msSigned(h.P99.Median), h.Pairs,
				dash(h.Proxy), f3(h.CPUPer1k.Median), f1(h.CtxPerReq.Median), mbOrDash(h.RSSBytes))
		}
		_ = tw.Flush()
	}
	if closed := rep.closedResults(); len(closed) > 0 {
		fmt.Fprintf(w, "\nclosed loop (saturation): max rps and requests per CPU-second of the proxy (median over repeats):\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "scenario\tload\trps\tp50 ms\tp99 ms\terrors\tproxy\treq per proxy CPU-s\tproxy CPU-s/1k\tproxy ctx sw/req\t")
		for _, r := range closed {
			m := r.Intended.Median()
			role, eff, cpu, cs := r.proxyColumns()
			fmt.Fprintf(tw, "%s\t%s\t%.0f [%.0f–%.0f]\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", r.Scenario, r.Params, r.RPS.Median, r.RPS.Min, r.RPS.Max,
				ms(m.P50), ms(m.P99), r.Errors, role, eff, cpu, cs)
		}
		_ = tw.Flush()
	}
	if len(rep.Idle) > 0 {
		fmt.Fprintf(w, "\nidle memory: RSS before any load, with one warm-up connection, with N more idle client connections; per connection = (RSS with N − warm RSS) / N:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "scenario\tclient\tN\tprocess\tidle RSS\twarm RSS\tRSS with N\tper connection\t")
		for _, r := range rep.Idle {
			if r.Error != "" {
				fmt.Fprintf(tw, "%s\t%s\t%d\tERROR: %s\t\t\t\t\t\n", r.Scenario, r.Kind, r.Conns, firstLine(r.Error))
				continue
			}
			for _, p := range r.Procs {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", r.Scenario, r.Kind, r.Conns, p.Role, mb(p.RSSIdle), mb(p.RSSWarm), mb(p.RSSWithConns), kb(p.BytesPerConn))
			}
		}
		_ = tw.Flush()
	}
}

// writeHopsMarkdown is writeHopsTable as markdown.
func (rep *Report) writeHopsMarkdown(w io.Writer) {
	if len(rep.Hops) > 0 {
		fmt.Fprintln(w, "\nHops: A − B paired per repeat (median [min–max] of the per-repeat differences, ms, intended time); the proxy's cost per request in A:")
		fmt.Fprintln(w, "\n| hop | A − B | load | Δp50 | Δp99 | pairs | proxy | CPU-s/1k [spread] | ctx switches/req | RSS |")
		fmt.Fprintln(w, "|---|---|---|--:|--:|--:|---|--:|--:|--:|")
		for _, h := range rep.Hops {
			cpu := "-"
			if h.CPUPer1k.Median > 0 {
				cpu = fmt.Sprintf("%s [%s–%s]", f3(h.CPUPer1k.Median), f3(h.CPUPer1k.Min), f3(h.CPUPer1k.Max))
			}
			fmt.Fprintf(w, "| %s | %s − %s | %s | %s [%s – %s] | %s | %d | %s | %s | %s | %s |\n", h.Name, h.A, h.B, h.Params,
				msSigned(h.P50.Median), msSigned(h.P50.Min), msSigned(h.P50.Max), msSigned(h.P99.Median), h.Pairs,
				dash(h.Proxy), cpu, f1(h.CtxPerReq.Median), mbOrDash(h.RSSBytes))
		}
	}
	if closed := rep.closedResults(); len(closed) > 0 {
		fmt.Fprintln(w, "\nClosed loop (K requests in flight, as fast as the path answers): rps median [min–max], requests per CPU-second of the proxy:")
		fmt.Fprintln(w, "\n| scenario | load | rps | p50 | p99 | errors | proxy | requests per proxy CPU-s | proxy CPU-s/1k | proxy ctx switches/req | all processes CPU-s/1k |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|---|--:|--:|--:|---|")
		for _, r := range closed {
			m := r.Intended.Median()
			role, eff, cpu, cs := r.proxyColumns()
			var all string
			for i, p := range r.Procs {
				if i > 0 {
					all += ", "
				}
				all += fmt.Sprintf("%s %.3f", p.Role, p.CPUPer1k.Median)
			}
			fmt.Fprintf(w, "| %s %s | %s | %.0f [%.0f–%.0f] | %s | %s | %d | %s | %s | %s | %s | %s |\n", r.Scenario, r.Title, r.Params,
				r.RPS.Median, r.RPS.Min, r.RPS.Max, ms(m.P50), ms(m.P99), r.Errors, role, eff, cpu, cs, all)
		}
	}
	if len(rep.Idle) > 0 {
		fmt.Fprintln(w, "\nIdle memory: RSS before any load, with one warm-up connection (used once), then with N more idle client connections open (each used once); per connection = (RSS with N − warm RSS) / N:")
		fmt.Fprintln(w, "\n| scenario | client | N | process | idle RSS | warm RSS | RSS with N | per connection |")
		fmt.Fprintln(w, "|---|---|--:|---|--:|--:|--:|--:|")
		for _, r := range rep.Idle {
			if r.Error != "" {
				fmt.Fprintf(w, "| %s | %s | %d | ERROR: %s | | | | |\n", r.Scenario, r.Kind, r.Conns, mdEscape(firstLine(r.Error)))
				continue
			}
			for _, p := range r.Procs {
				fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", r.Scenario, r.Kind, r.Conns, p.Role, mb(p.RSSIdle), mb(p.RSSWarm), mb(p.RSSWithConns), kb(p.BytesPerConn))
			}
		}
	}
}

// closedResults returns the closed-loop results that ran.
func (rep *Report) closedResults() []*Result {
	var out []*Result
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Params.Closed() && r.ok() {
			out = append(out, r)
		}
	}
	return out
}

func msSigned(us float64) string { return fmt.Sprintf("%+.3f", us/1000) }

func f3(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", x)
}

func f1(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", x)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mbOrDash(b int64) string {
	if b == 0 {
		return "-"
	}
	return mb(b)
}

// proxyColumns are a closed-loop result's proxy columns: its role, requests
// per proxy CPU-second, proxy CPU-seconds per 1k requests and context
// switches per request ("-" each without a proxy).
func (r *Result) proxyColumns() (role, eff, cpu, cs string) {
	ps := r.proc(scenarioProxy(r.Scenario))
	if ps == nil {
		return "-", "-", "-", "-"
	}
	return ps.Role, fmt.Sprintf("%.0f", ps.ReqPerCPUs.Median), f3(ps.CPUPer1k.Median), f1(ps.CtxPerReq.Median)
}
