package bench

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSelectScenarios(t *testing.T) {
	all, err := SelectScenarios(nil)
	if err != nil || len(all) != len(scenarioOrder) {
		t.Fatalf("all: %d %v", len(all), err)
	}
	for i, s := range all {
		if s.ID != scenarioOrder[i] {
			t.Fatalf("order %d: %s, want %s", i, s.ID, scenarioOrder[i])
		}
	}
	got, err := SelectScenarios([]string{"s5", " S0"})
	if err != nil || len(got) != 2 || got[0].ID != "S0" || got[1].ID != "S5" {
		t.Fatalf("got %+v %v", got, err)
	}
	if _, err := SelectScenarios([]string{"S9"}); !errors.Is(err, ErrUnknownScenario) {
		t.Fatalf("S9: %v", err)
	}
}

func TestSkipReasons(t *testing.T) {
	byID := map[string]Scenario{}
	for _, s := range Scenarios() {
		byID[s.ID] = s
	}
	o := Options{}
	if r := o.skipReason(byID["S1"]); !strings.Contains(r, "no envoy") {
		t.Fatalf("S1 without envoy: %q", r)
	}
	if r := o.skipReason(byID["S3"]); !strings.Contains(r, "no meshgate binary") {
		t.Fatalf("S3 without binary: %q", r)
	}
	o.EnvoyBin = "/bin/true"
	if r := o.skipReason(byID["S1w"]); !strings.HasPrefix(r, "no wasm") {
		t.Fatalf("S1w without wasm: %q", r)
	}
	o.Wasm = "/nonexistent/mgp_filter.wasm"
	if r := o.skipReason(byID["S1w"]); !strings.HasPrefix(r, "no wasm") {
		t.Fatalf("S1w with a missing file: %q", r)
	}
	if r := o.skipReason(byID["S0"]); r != "" {
		t.Fatalf("S0: %q", r)
	}
}

// TestRunSuiteInProcess runs S0 (real legacy server and privconn clients)
// and S5 (real grpc-go server and client) in-process, plus S1 and S3, which
// must be reported as skipped (no Envoy, no binary), never silently dropped.
//
// It runs in both resident modes and checks which topologies are up at
// every measurement: only the measured one (ResidentOne), or every one
// (ResidentAll).
func TestRunSuiteInProcess(t *testing.T) {
	for _, mode := range []string{ResidentOne, ResidentAll} {
		t.Run(mode, func(t *testing.T) { testRunSuiteInProcess(t, mode) })
	}
}

func testRunSuiteInProcess(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var progress bytes.Buffer
	var seen []string
	testHookMeasure = func(measured string, up []string) {
		seen = append(seen, measured+":"+strings.Join(up, ","))
	}
	defer func() { testHookMeasure = nil }()
	rep, err := RunSuite(ctx, Options{
		Scenarios:     []string{"S0", "S1", "S3", "S5"},
		Params:        []Params{{Rate: 500, Conns: 2, Payload: 1024, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond}},
		Repeats:       2,
		InProcServers: true,
		Progress:      &progress,
		Resident:      mode,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "S0:S0 S5:S5 S0:S0 S5:S5"
	if mode == ResidentAll {
		want = "S0:S0,S5 S5:S0,S5 S0:S0,S5 S5:S0,S5"
	}
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("measured:up = %s, want %s", got, want)
	}
	if len(rep.Results) != 4 {
		t.Fatalf("%d results", len(rep.Results))
	}
	for _, r := range rep.Results {
		switch r.Scenario {
		case "S1", "S3":
			if r.Skipped == "" {
				t.Errorf("%s not skipped: %+v", r.Scenario, r)
			}
		default:
			if r.Error != "" || r.Errors != 0 || len(r.Runs) != 2 {
				t.Errorf("%s: error %q, %d errors, %d runs", r.Scenario, r.Error, r.Errors, len(r.Runs))
			}
			if r.OK < 300 || r.OK > 420 {
				t.Errorf("%s: %d ok over 2 × 0.4 s at 500 rps", r.Scenario, r.OK)
			}
			if r.Intended.P50.Median <= 0 || r.Procs[0].Role != RoleBench {
				t.Errorf("%s: %+v %+v", r.Scenario, r.Intended, r.Procs)
			}
		}
	}
	if s0 := rep.find("S0", rep.Results[0].Params); s0 == nil || s0.VsS0.P50 != 1 {
		t.Fatalf("S0 ratio to itself: %+v", s0)
	}
	if !strings.Contains(progress.String(), "S1   skipped: no envoy") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

func TestServeUnknownKind(t *testing.T) {
	if err := Serve(context.Background(), "nope", nil, nil); !errors.Is(err, ErrServerKind) {
		t.Fatalf("err %v", err)
	}
}

func TestRunSuiteBadResident(t *testing.T) {
	_, err := RunSuite(context.Background(), Options{Scenarios: []string{"S0"}, Resident: "some"})
	if !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), "Resident") {
		t.Fatalf("err = %v, want ErrBadOption naming Resident", err)
	}
}
