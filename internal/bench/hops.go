package bench

// HopDef names a hop as the difference between two scenarios that differ
// by one proxy: A (with the proxy) minus B (without it).
type HopDef struct {
	Name string
	A, B string
}

// HopDefs are the hops the report computes, MeshGate's beside Envoy's.
var HopDefs = []HopDef{
	{"MeshGate private→gRPC", "S3", "S5"},
	{"MeshGate private→gRPC, grpc-go upstream client", "S3g", "S5"},
	{"MeshGate gRPC→private", "S6", "S0"},
	{"MeshGate gRPC→private, grpc-go listener server", "S6g", "S0"},
	{"Envoy L7 gRPC proxy", "EL7", "S5"},
	{"Envoy JSON→gRPC transcoder (vs JSON direct)", "EJT", "HJ"},
	{"Envoy JSON→gRPC transcoder (vs grpc-go direct)", "EJT", "S5"},
	{"Envoy tcp_proxy (L4 floor)", "S1", "S0"},
	{"Envoy tcp_proxy + MGP wasm", "S1w", "S0"},
	{"MeshGate private→private", "MPP", "S0"},
	{"MeshGate gRPC→gRPC", "MGG", "S5"},
	{"Envoy sidecar pair, mTLS", "S2", "S0"},
	{"100 % shadow on private→private", "MPPs", "MPP"},
	{"100 % shadow on gRPC→gRPC", "MGGs", "MGG"},
}

// Hop is one hop's cost at one open-loop load point: the latency
// differences A−B paired by repeat (both measured back to back within the
// same repeat), and the CPU, context switches and RSS of A's proxy
// process.
type Hop struct {
	Name   string `json:"name"`
	A      string `json:"a"`
	B      string `json:"b"`
	Params Params `json:"params"`
	// Pairs is the number of repeats in which both A and B were measured.
	Pairs int `json:"pairs"`
	// P50 and P99 are the paired differences (µs, intended time).
	P50 Spread `json:"p50_us"`
	P99 Spread `json:"p99_us"`
	// Proxy is A's proxy role; its cost per request over A's runs.
	Proxy     string `json:"proxy,omitempty"`
	CPUPer1k  Spread `json:"proxy_cpu_s_per_1k"`
	CtxPerReq Spread `json:"proxy_ctx_switches_per_request"`
	RSSBytes  int64  `json:"proxy_rss_bytes"`
}

// scenarioProxy returns the proxy role of scenario id.
func scenarioProxy(id string) string {
	for _, s := range Scenarios() {
		if s.ID == id {
			return s.Proxy
		}
	}
	return ""
}

// computeHops pairs the runs of every HopDefs entry at every open-loop
// load point where both scenarios have runs.
func (rep *Report) computeHops() []Hop {
	var out []Hop
	seen := map[Params]bool{}
	for i := range rep.Results {
		p := rep.Results[i].Params
		key := Params{Rate: p.Rate, Conns: p.Conns, Payload: p.Payload, InFlight: p.InFlight}
		if p.Closed() || seen[key] {
			continue
		}
		seen[key] = true
		for _, d := range HopDefs {
			a, b := rep.find(d.A, p), rep.find(d.B, p)
			if a == nil || b == nil || !a.ok() || !b.ok() {
				continue
			}
			h := Hop{Name: d.Name, A: d.A, B: d.B, Params: p, Proxy: scenarioProxy(d.A)}
			byRep := map[int]Run{}
			for _, r := range b.Runs {
				byRep[r.Repeat] = r
			}
			var d50, d99 []float64
			for _, ra := range a.Runs {
				rb, ok := byRep[ra.Repeat]
				if !ok {
					continue
				}
				d50 = append(d50, ra.Intended.P50-rb.Intended.P50)
				d99 = append(d99, ra.Intended.P99-rb.Intended.P99)
			}
			if len(d50) == 0 {
				continue
			}
			h.Pairs, h.P50, h.P99 = len(d50), SpreadOf(d50), SpreadOf(d99)
			if ps := a.proc(h.Proxy); ps != nil {
				h.CPUPer1k, h.CtxPerReq, h.RSSBytes = ps.CPUPer1k, ps.CtxPerReq, ps.RSSBytes
			}
			out = append(out, h)
		}
	}
	return out
}

// proc returns the summary of role in r, or nil.
func (r *Result) proc(role string) *ProcSummary {
	if role == "" {
		return nil
	}
	for i := range r.Procs {
		if r.Procs[i].Role == role {
			return &r.Procs[i]
		}
	}
	return nil
}

// hop returns the hop A−B at the target load point, or nil.
func (rep *Report) hop(a, b string, p Params) *Hop {
	for i := range rep.Hops {
		h := &rep.Hops[i]
		if h.A == a && h.B == b && h.Params.same(p) {
			return h
		}
	}
	return nil
}
