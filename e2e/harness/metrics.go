package harness

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
)

// Labels selects samples by label values (a subset of each sample's).
type Labels map[string]string

var labelPair = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// MetricSum sums, in a Prometheus text exposition, the samples of metric
// name whose labels include every pair of want; 0 when none match.
func MetricSum(text, name string, want Labels) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue // a comment, another metric, or name_suffix
		}
		labels, value := "", strings.TrimSpace(rest)
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, value = rest[1:end], strings.TrimSpace(rest[end+1:])
		}
		got := map[string]string{}
		for _, m := range labelPair.FindAllStringSubmatch(labels, -1) {
			got[m[1]] = m[2]
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if f := strings.Fields(value); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// Metric scrapes the admin /metrics and returns MetricSum of name/want.
func (m *Meshgate) Metric(name string, want Labels) (float64, error) {
	body, err := m.Metrics()
	if err != nil {
		return 0, err
	}
	return MetricSum(body, name, want), nil
}
