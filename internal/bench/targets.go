package bench

import "fmt"

// Target limits (see BENCHMARKS.md). They are printed PASS/MISS on every
// run and never asserted in tests.
const (
	limitHopVsEnvoyL7      = 0.6   // conversion hop p50 ≤ 0.6× Envoy L7's hop
	limitCPUVsEnvoyL7      = 0.7   // MeshGate CPU/request ≤ 0.7× Envoy L7's
	limitCPUStretch        = 0.12  // CPU-s per 1k requests (stretch)
	limitCtxPerReq         = 6     // context switches per request
	limitSaturationVsL7    = 1.5   // requests per proxy CPU-second ≥ 1.5× Envoy L7's
	limitP2PVsTCPProxy     = 2     // private→private hop ≤ 2× Envoy tcp_proxy's (p50, CPU)
	limitIdleRSS           = 20    // MB
	limitIdleMGPConnBytes  = 8192  // bytes per idle MGP connection
	limitIdleGRPCConnBytes = 12288 // bytes per idle gRPC connection
)

// targetPoint is the open-loop load point targets use: 1 KB at 1 000 rps,
// the fewest connections measured.
func (rep *Report) targetPoint() (Params, bool) {
	var best Params
	found := false
	for _, r := range rep.Results {
		p := r.Params
		if p.Closed() || p.Rate != targetRate || p.Payload != targetPayload {
			continue
		}
		if !found || p.Conns < best.Conns {
			best, found = p, true
		}
	}
	return best, found
}

// closedPoint is the closed-loop point saturation targets use: 1 KB, the
// fewest connections, then the most requests in flight.
func (rep *Report) closedPoint() (Params, bool) {
	var best Params
	found := false
	for _, r := range rep.Results {
		p := r.Params
		if !p.Closed() || p.Payload != targetPayload {
			continue
		}
		if !found || p.Conns < best.Conns || (p.Conns == best.Conns && p.InFlight > best.InFlight) {
			best, found = p, true
		}
	}
	return best, found
}

func na(t Target, why string) Target {
	t.Status, t.Why = "N/A", why
	return t
}

// skipWhy returns why scenario id did not run at p ("" when it ran or
// is absent).
func (rep *Report) skipWhy(id string, p Params) string {
	r := rep.find(id, p)
	switch {
	case r == nil:
		return id + " not run"
	case r.Skipped != "":
		return id + " skipped: " + r.Skipped
	case r.Error != "":
		return id + " failed"
	}
	return ""
}

// procStat returns scenario id's proxy summary at p, or the reason it is
// missing.
func (rep *Report) procStat(id, role string, p Params) (*ProcSummary, string) {
	if why := rep.skipWhy(id, p); why != "" {
		return nil, why
	}
	ps := rep.find(id, p).proc(role)
	if ps == nil {
		return nil, fmt.Sprintf("%s: no %s process measured", id, role)
	}
	return ps, ""
}

// hopRatio is target t as hop(a−b) / hop(c−d) on p50 at p.
func (rep *Report) hopRatio(t Target, p Params, a, b, c, d string) Target {
	h, ref := rep.hop(a, b, p), rep.hop(c, d, p)
	if h == nil || ref == nil {
		for _, id := range []string{a, b, c, d} {
			if why := rep.skipWhy(id, p); why != "" {
				return na(t, why)
			}
		}
		return na(t, "no paired repeats")
	}
	if ref.P50.Median <= 0 {
		return na(t, fmt.Sprintf("%s−%s hop not positive (%.0f µs)", c, d, ref.P50.Median))
	}
	t.Value = h.P50.Median / ref.P50.Median
	t.Why = fmt.Sprintf("%s−%s %.3f ms / %s−%s %.3f ms (paired medians) at %s", a, b, h.P50.Median/1000, c, d, ref.P50.Median/1000, p)
	return judge(t, t.Value <= t.Limit)
}

// cpuRatio is target t as CPU-s/1k of (a, roleA) / (c, roleC) at p.
func (rep *Report) cpuRatio(t Target, p Params, a, roleA, c, roleC string) Target {
	x, why := rep.procStat(a, roleA, p)
	if x == nil {
		return na(t, why)
	}
	y, why := rep.procStat(c, roleC, p)
	if y == nil {
		return na(t, why)
	}
	t.Value = Ratio(x.CPUPer1k.Median, y.CPUPer1k.Median)
	t.Why = fmt.Sprintf("%s %s %.3f / %s %s %.3f CPU-s/1k at %s", a, roleA, x.CPUPer1k.Median, c, roleC, y.CPUPer1k.Median, p)
	return judge(t, t.Value > 0 && t.Value <= t.Limit)
}

// idleProc returns the idle result of role in scenario id.
func (rep *Report) idleProc(id, role string) (*IdleResult, *IdleProc) {
	for i := range rep.Idle {
		r := &rep.Idle[i]
		if r.Scenario == id && r.Error == "" {
			if p := r.proc(role); p != nil {
				return r, p
			}
		}
	}
	return nil, nil
}

func (rep *Report) evalTargets() []Target {
	var out []Target
	p, okP := rep.targetPoint()
	noPoint := "needs a 1 KB × 1k rps open-loop point"

	// Conversion hops vs Envoy's L7 hop, both directions.
	for _, d := range []struct{ name, a, b string }{
		{"private→gRPC hop p50 <= 0.6x Envoy L7 hop (S3−S5 / EL7−S5)", "S3", "S5"},
		{"gRPC→private hop p50 <= 0.6x Envoy L7 hop (S6−S0 / EL7−S5)", "S6", "S0"},
	} {
		t := Target{Name: d.name, Limit: limitHopVsEnvoyL7, Unit: "x"}
		if !okP {
			out = append(out, na(t, noPoint))
			continue
		}
		out = append(out, rep.hopRatio(t, p, d.a, d.b, "EL7", "S5"))
	}
	// CPU per request vs Envoy L7, and the stretch absolute.
	for _, d := range []struct{ name, id string }{
		{"MeshGate CPU/request <= 0.7x Envoy L7 (S3 priv→gRPC)", "S3"},
		{"MeshGate CPU/request <= 0.7x Envoy L7 (S6 gRPC→priv)", "S6"},
	} {
		t := Target{Name: d.name, Limit: limitCPUVsEnvoyL7, Unit: "x"}
		if !okP {
			out = append(out, na(t, noPoint))
			continue
		}
		out = append(out, rep.cpuRatio(t, p, d.id, RoleMeshGate, "EL7", RoleEnvoyA))
	}
	worst := func(t Target, get func(*ProcSummary) float64, unit string) Target {
		t.Unit = unit
		if !okP {
			return na(t, noPoint)
		}
		found := false
		for _, id := range []string{"S3", "S6"} {
			ps, _ := rep.procStat(id, RoleMeshGate, p)
			if ps == nil {
				continue
			}
			if v := get(ps); !found || v > t.Value {
				t.Value, found = v, true
				t.Why = "worst of S3, S6: " + id + " at " + p.String()
			}
		}
		if !found {
			return na(t, "needs S3 or S6 with MeshGate measured")
		}
		return judge(t, t.Value <= t.Limit)
	}
	out = append(out, worst(Target{Name: "MeshGate <= 0.12 CPU-s per 1k requests (stretch)", Limit: limitCPUStretch},
		func(ps *ProcSummary) float64 { return ps.CPUPer1k.Median }, "CPU-s/1k"))
	out = append(out, worst(Target{Name: "MeshGate context switches <= 6 per request", Limit: limitCtxPerReq},
		func(ps *ProcSummary) float64 { return ps.CtxPerReq.Median }, "/request"))

	// Saturation efficiency: requests per proxy CPU-second in closed loop.
	cp, okC := rep.closedPoint()
	for _, d := range []struct{ name, id string }{
		{"saturation: MeshGate requests per CPU-s >= 1.5x Envoy L7 (S3)", "S3"},
		{"saturation: MeshGate requests per CPU-s >= 1.5x Envoy L7 (S6)", "S6"},
	} {
		t := Target{Name: d.name, Limit: limitSaturationVsL7, Unit: "x"}
		if !okC {
			out = append(out, na(t, "needs a closed-loop point (-closed K)"))
			continue
		}
		x, why := rep.procStat(d.id, RoleMeshGate, cp)
		y, why2 := rep.procStat("EL7", RoleEnvoyA, cp)
		if x == nil {
			out = append(out, na(t, why))
			continue
		}
		if y == nil {
			out = append(out, na(t, why2))
			continue
		}
		t.Value = Ratio(x.ReqPerCPUs.Median, y.ReqPerCPUs.Median)
		t.Why = fmt.Sprintf("%s meshgate %.0f / EL7 envoy %.0f requests per CPU-s at %s", d.id, x.ReqPerCPUs.Median, y.ReqPerCPUs.Median, cp)
		out = append(out, judge(t, t.Value >= t.Limit))
	}

	// private→private vs Envoy tcp_proxy.
	t := Target{Name: "private→private hop p50 <= 2x Envoy tcp_proxy (MPP−S0 / S1−S0)", Limit: limitP2PVsTCPProxy, Unit: "x"}
	if !okP {
		out = append(out, na(t, noPoint))
	} else {
		out = append(out, rep.hopRatio(t, p, "MPP", "S0", "S1", "S0"))
	}
	t = Target{Name: "private→private CPU <= 2x Envoy tcp_proxy (MPP / S1)", Limit: limitP2PVsTCPProxy, Unit: "x"}
	if !okP {
		out = append(out, na(t, noPoint))
	} else {
		out = append(out, rep.cpuRatio(t, p, "MPP", RoleMeshGate, "S1", RoleEnvoyA))
	}

	// Memory.
	t = Target{Name: "MeshGate idle RSS <= 20 MB", Limit: limitIdleRSS, Unit: "MB"}
	found := false
	for _, id := range []string{"S3", "S6"} {
		if _, ip := rep.idleProc(id, RoleMeshGate); ip != nil {
			if v := float64(ip.RSSIdle) / (1 << 20); !found || v > t.Value {
				t.Value, found, t.Why = v, true, "worst of S3, S6 before any load: "+id
			}
		}
	}
	if !found {
		out = append(out, na(t, "needs the idle measurement (-idle-conns N) of S3 or S6"))
	} else {
		out = append(out, judge(t, t.Value <= t.Limit))
	}
	for _, d := range []struct {
		name, id string
		limit    float64
	}{
		{"<= 8 KB per idle MGP connection (MeshGate, S3)", "S3", limitIdleMGPConnBytes},
		{"<= 12 KB per idle gRPC connection (MeshGate, S6)", "S6", limitIdleGRPCConnBytes},
	} {
		t := Target{Name: d.name, Limit: d.limit / 1024, Unit: "KB"}
		ir, ip := rep.idleProc(d.id, RoleMeshGate)
		if ip == nil {
			out = append(out, na(t, "needs the idle measurement (-idle-conns N) of "+d.id))
			continue
		}
		t.Value = ip.BytesPerConn / 1024
		t.Why = fmt.Sprintf("RSS %s (warm) → %s with %d idle connections", mb(ip.RSSWarm), mb(ip.RSSWithConns), ir.Conns)
		out = append(out, judge(t, t.Value <= t.Limit))
	}

	// S4 tail.
	t = Target{Name: "S4 p99 < 1 ms (1k rps)", Limit: 1, Unit: "ms"}
	if s4 := rep.targetResult("S4"); s4 == nil {
		out = append(out, na(t, "needs S4 at 1 KB x 1k rps"))
	} else {
		t.Value = s4.Intended.P99.Median / 1000
		t.Why = "at " + s4.Params.String()
		out = append(out, judge(t, t.Value < t.Limit))
	}
	return out
}
