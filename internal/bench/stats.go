package bench

import (
	"math"
	"sort"
)

// Spread is the median and range of one value across repeats.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// SpreadOf returns the median, min and max of xs (zero for none). The
// median of an even count is the mean of the two middle values.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Spread{Median: med, Min: s[0], Max: s[n-1]}
}

// LatencySpread is the per-percentile spread of several repeats.
type LatencySpread struct {
	Avg  Spread `json:"avg_us"`
	P50  Spread `json:"p50_us"`
	P90  Spread `json:"p90_us"`
	P95  Spread `json:"p95_us"`
	P99  Spread `json:"p99_us"`
	P999 Spread `json:"p99_9_us"`
	Max  Spread `json:"max_us"`
}

// Spreads lists the spreads in MetricNames order.
func (l LatencySpread) Spreads() []Spread {
	return []Spread{l.Avg, l.P50, l.P90, l.P95, l.P99, l.P999, l.Max}
}

// Median returns the per-percentile medians as a Latency.
func (l LatencySpread) Median() Latency {
	sp := l.Spreads()
	m := make([]float64, len(sp))
	for i, s := range sp {
		m[i] = s.Median
	}
	return latencyFrom(m, 0)
}

// SpreadLatencies aggregates repeats percentile by percentile.
func SpreadLatencies(ls []Latency) LatencySpread {
	cols := make([][]float64, len(MetricNames))
	for _, l := range ls {
		for i, v := range l.Metrics() {
			cols[i] = append(cols[i], v)
		}
	}
	sp := make([]Spread, len(cols))
	for i := range cols {
		sp[i] = SpreadOf(cols[i])
	}
	return LatencySpread{Avg: sp[0], P50: sp[1], P90: sp[2], P95: sp[3], P99: sp[4], P999: sp[5], Max: sp[6]}
}

// Ratio returns a/b, or 0 (unknown) when b is not positive.
func Ratio(a, b float64) float64 {
	if b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

// CPUPer1k returns CPU seconds per 1 000 requests, or 0 without requests.
func CPUPer1k(cpuSeconds float64, requests int64) float64 {
	if requests <= 0 {
		return 0
	}
	return cpuSeconds / (float64(requests) / 1000)
}
