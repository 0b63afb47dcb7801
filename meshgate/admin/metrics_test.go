package admin

import (
	"slices"
	"testing"
)

// TestRequestGatherer: the gatherer the migration controller samples every
// second holds the two request families and nothing else (not the Go and
// process collectors, whose collection allocated ~200 KB a second on an
// idle process), while Registry still serves them all.
func TestRequestGatherer(t *testing.T) {
	m := NewMetrics()
	m.Requests.WithLabelValues("l", "r", "u", "OK").Inc()
	m.Latency.WithLabelValues("l", "r", "u").Observe(0.001)
	fams, err := m.RequestGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fams {
		got = append(got, f.GetName())
	}
	if want := []string{"meshgate_request_duration_seconds", "meshgate_requests_total"}; !slices.Equal(got, want) {
		t.Fatalf("RequestGatherer families = %v, want %v", got, want)
	}
	all, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, f := range all {
		switch f.GetName() {
		case "meshgate_request_duration_seconds", "meshgate_requests_total", "go_goroutines", "process_resident_memory_bytes":
			seen++
		}
	}
	if seen != 4 {
		t.Fatalf("Registry lacks a request family or the Go/process collectors (%d of 4 seen)", seen)
	}
	allocs := testing.AllocsPerRun(20, func() { _, _ = m.RequestGatherer.Gather() })
	full := testing.AllocsPerRun(20, func() { _, _ = m.Registry.Gather() })
	t.Logf("allocs per Gather: requests %.0f, full registry %.0f", allocs, full)
	if allocs*4 > full {
		t.Errorf("RequestGatherer.Gather allocates %.0f times, the full registry %.0f: not the cheap path", allocs, full)
	}
}
