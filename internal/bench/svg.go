package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// svgPalette colours scenarios in a stable order.
var svgPalette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// WriteSVG draws, for every parameter set, the intended-time latency
// percentiles (p50, p90, p95, p99, p99.9, max) of each scenario as a line
// on a logarithmic millisecond axis, with min–max whiskers over repeats.
func (rep *Report) WriteSVG(w io.Writer) error {
	// Group results by parameters, keeping order.
	var groups [][]*Result
	idx := map[Params]int{}
	for i := range rep.Results {
		r := &rep.Results[i]
		if !r.ok() {
			continue
		}
		k := r.Params
		k.Duration, k.Warmup = 0, 0
		g, ok := idx[k]
		if !ok {
			g = len(groups)
			idx[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], r)
	}
	const (
		width   = 760
		panelH  = 300
		left    = 60
		right   = 170
		top     = 40
		bottom  = 40
		plotW   = width - left - right
		plotH   = panelH - top - bottom
		nPoints = 6
	)
	names := []string{"p50", "p90", "p95", "p99", "p99.9", "max"}
	height := panelH*max(len(groups), 1) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	if len(groups) == 0 {
		fmt.Fprintf(&b, `<text x="20" y="30">no results</text>`+"\n")
	}
	for gi, g := range groups {
		y0 := gi * panelH
		// y range over every value shown.
		lo, hi := math.Inf(1), 0.0
		for _, r := range g {
			for _, s := range latSpreads(r) {
				if s.Min > 0 {
					lo = math.Min(lo, s.Min)
				}
				hi = math.Max(hi, s.Max)
			}
		}
		if hi <= 0 {
			continue
		}
		lmin := math.Floor(math.Log10(lo / 1000))
		lmax := math.Ceil(math.Log10(hi / 1000))
		if lmax <= lmin {
			lmax = lmin + 1
		}
		ypos := func(us float64) float64 {
			if us <= 0 {
				us = lo
			}
			f := (math.Log10(us/1000) - lmin) / (lmax - lmin)
			return float64(y0+top) + float64(plotH)*(1-f)
		}
		xpos := func(i int) float64 { return float64(left) + float64(plotW)*(float64(i)+0.5)/nPoints }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s — latency from intended send time (ms, log scale)</text>`+"\n",
			left, y0+22, html.EscapeString(g[0].Params.String()))
		// Grid and y labels: each decade and 2, 5 inside it.
		for e := lmin; e <= lmax; e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if math.Log10(v) > lmax+1e-9 {
					continue
				}
				y := ypos(v * 1000)
				stroke := "#eee"
				if m == 1 {
					stroke = "#ccc"
				}
				fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", left, y, left+plotW, y, stroke)
				fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-4, y+4, trimFloat(v))
			}
		}
		for i, n := range names {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xpos(i), y0+top+plotH+16, n)
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", left, y0+top, plotW, plotH)
		for ri, r := range g {
			col := svgPalette[scenarioColor(r.Scenario, ri)%len(svgPalette)]
			sp := latSpreads(r)
			var pts []string
			for i, s := range sp {
				x := xpos(i) + float64(ri-len(g)/2)*2 // small offset so whiskers do not overlap
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, ypos(s.Median)))
				if s.Max > s.Min {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n", x, ypos(s.Min), x, ypos(s.Max), col)
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", x, ypos(s.Median), col)
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", strings.Join(pts, " "), col)
			ly := y0 + top + 12 + ri*16
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", left+plotW+10, ly-4, left+plotW+24, ly-4, col)
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+plotW+28, ly, html.EscapeString(r.Scenario+" "+shortTitle(r.Title)))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func latSpreads(r *Result) []Spread {
	l := r.Intended
	return []Spread{l.P50, l.P90, l.P95, l.P99, l.P999, l.Max}
}

func scenarioColor(id string, fallback int) int {
	for i, s := range scenarioOrder {
		if s == id {
			return i
		}
	}
	return fallback
}

func shortTitle(t string) string {
	if len(t) > 22 {
		return t[:21] + "…"
	}
	return t
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
