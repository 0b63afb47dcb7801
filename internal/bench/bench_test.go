package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestScheduleTimes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := NewSchedule(t0, 4000) // 250 µs apart
	if s.Interval != 250*time.Microsecond {
		t.Fatalf("interval %v", s.Interval)
	}
	if got := s.At(4); !got.Equal(t0.Add(time.Millisecond)) {
		t.Fatalf("At(4) = %v", got)
	}
	for _, c := range []struct {
		end  time.Duration
		want int64
	}{{0, 0}, {-time.Second, 0}, {250 * time.Microsecond, 1}, {251 * time.Microsecond, 2}, {time.Second, 4000}} {
		if got := s.Count(t0.Add(c.end)); got != c.want {
			t.Errorf("Count(+%v) = %d, want %d", c.end, got, c.want)
		}
	}
}

func TestOpenLoopFiresIntendedTimesWithoutWaiting(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := NewSchedule(t0, 1000)
	var slept []time.Time
	sleep := func(_ context.Context, until time.Time) bool { slept = append(slept, until); return true }
	var got []time.Time
	n := runOpenLoop(context.Background(), s, t0.Add(10*time.Millisecond), sleep, func(i int64, at time.Time) {
		if int64(len(got)) != i {
			t.Fatalf("fire %d out of order", i)
		}
		got = append(got, at)
	})
	if n != 10 || len(got) != 10 {
		t.Fatalf("fired %d/%d, want 10", n, len(got))
	}
	for i, at := range got {
		if want := t0.Add(time.Duration(i) * time.Millisecond); !at.Equal(want) || !slept[i].Equal(want) {
			t.Fatalf("request %d intended %v slept until %v, want %v", i, at, slept[i], want)
		}
	}
	// A cancelled sleep stops the loop.
	calls := 0
	n = runOpenLoop(context.Background(), s, t0.Add(time.Second), func(context.Context, time.Time) bool { calls++; return calls < 4 }, func(int64, time.Time) {})
	if n != 3 {
		t.Fatalf("stopped after %d, want 3", n)
	}
}

func TestOpenLoopRealClockIsNotClosedLoop(t *testing.T) {
	// Replies take 30 ms; at 1 000 rps a closed loop over one connection
	// would send ~4 requests in 100 ms. Open loop sends ~100.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var inflight, peak atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	n := RunOpenLoop(ctx, NewSchedule(start, 1000), start.Add(100*time.Millisecond), func(int64, time.Time) {
		p := inflight.Add(1)
		for {
			old := peak.Load()
			if p <= old || peak.CompareAndSwap(old, p) {
				break
			}
		}
		wg.Add(1)
		time.AfterFunc(30*time.Millisecond, func() { inflight.Add(-1); wg.Done() })
	})
	wg.Wait()
	if n != 100 {
		t.Fatalf("fired %d, want 100", n)
	}
	if peak.Load() < 10 {
		t.Fatalf("peak in flight %d: the loop waited for replies", peak.Load())
	}
}

func TestRecorderWarmupErrorsAndCOFree(t *testing.T) {
	t0 := time.Unix(1000, 0)
	from := t0.Add(time.Second)
	r := NewRecorder(from)
	// Warm-up: ignored.
	r.Begin()
	r.Record(t0, t0, t0.Add(time.Hour), nil)
	// 1000 requests: intended at from+i ms, actually sent 100 µs late,
	// each taking (i+1) µs after the actual send.
	for i := 0; i < 1000; i++ {
		in := from.Add(time.Duration(i) * time.Millisecond)
		sent := in.Add(100 * time.Microsecond)
		r.Begin()
		r.Record(in, sent, sent.Add(time.Duration(i+1)*time.Microsecond), nil)
	}
	r.Begin()
	r.Record(from, from, from, errors.New("boom"))
	r.Begin() // never completes
	if p := r.Close(); p != 1 {
		t.Fatalf("pending at close = %d, want 1", p)
	}
	r.AddErrors(1, "no reply")
	r.Record(from, from, from, nil) // after Close: ignored
	in, act, ok, errs, kinds := r.Snapshot()
	if ok != 1000 || errs != 2 || kinds["boom"] != 1 || kinds["no reply"] != 1 {
		t.Fatalf("ok %d errs %d kinds %v", ok, errs, kinds)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > want*0.01+1 {
			t.Errorf("%s = %v, want ~%v", name, got, want)
		}
	}
	near("actual p50", act.P50, 500)
	near("actual p99", act.P99, 990)
	near("actual max", act.Max, 1000)
	near("actual avg", act.Avg, 500.5)
	near("intended p50", in.P50, 600)
	near("intended p99", in.P99, 1090)
	near("intended max", in.Max, 1100)
}

func TestRecorderClampsOutOfRange(t *testing.T) {
	r := NewRecorder(time.Time{})
	now := time.Now()
	r.Record(now, now, now.Add(-time.Second), nil) // clock step: clamps to 1 µs
	r.Record(now, now, now.Add(2*time.Minute), nil)
	in, _, ok, _, _ := r.Snapshot()
	if ok != 2 || in.Max < 59e6 || in.P50 != 1 {
		t.Fatalf("ok %d %+v", ok, in)
	}
}

func TestSpreadAndRatios(t *testing.T) {
	if s := SpreadOf([]float64{3, 1, 2}); s != (Spread{Median: 2, Min: 1, Max: 3}) {
		t.Fatalf("odd %+v", s)
	}
	if s := SpreadOf([]float64{4, 1, 2, 3}); s != (Spread{Median: 2.5, Min: 1, Max: 4}) {
		t.Fatalf("even %+v", s)
	}
	if s := SpreadOf(nil); s != (Spread{}) {
		t.Fatalf("empty %+v", s)
	}
	ls := SpreadLatencies([]Latency{{P50: 10, P99: 30}, {P50: 20, P99: 10}, {P50: 30, P99: 20}})
	if ls.P50 != (Spread{20, 10, 30}) || ls.P99 != (Spread{20, 10, 30}) {
		t.Fatalf("%+v", ls)
	}
	if m := ls.Median(); m.P50 != 20 || m.P99 != 20 {
		t.Fatalf("median %+v", m)
	}
	if Ratio(3, 2) != 1.5 || Ratio(1, 0) != 0 || Ratio(math.NaN(), 1) != 0 {
		t.Fatal("Ratio")
	}
	if CPUPer1k(0.5, 10000) != 0.05 || CPUPer1k(1, 0) != 0 {
		t.Fatal("CPUPer1k")
	}
}

func TestProcParsing(t *testing.T) {
	stat := []byte("4242 (we) ird (name)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 5 6 7\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3.0 {
		t.Fatalf("cpu %v err %v, want 3.0", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1 2")); !errors.Is(err, ErrProc) {
		t.Fatalf("short stat: %v", err)
	}
	if age, err := parseAge(stat, []byte("10.05 123.4\n")); err != nil || age != 10*time.Second {
		t.Fatalf("age %v err %v, want 10s (started 5 ticks after boot, up 10.05 s)", age, err)
	}
	if _, err := parseAge([]byte("1 (x) S 1 2"), []byte("1.0 1.0")); !errors.Is(err, ErrProc) {
		t.Fatalf("short stat: %v", err)
	}
	// /proc/uptime and the start time are in 10 ms ticks: a process this
	// young may read 0 or one tick less.
	if age, err := procAge(os.Getpid()); err != nil || age < -20*time.Millisecond || age > time.Hour {
		t.Fatalf("own age %v err %v", age, err)
	}
	rss, hwm := parseStatusRSS([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	if rss != 1<<20 || hwm != 2<<20 {
		t.Fatalf("rss %d hwm %d", rss, hwm)
	}
	s, err := ReadProc(os.Getpid())
	if err != nil || s.RSSBytes < 1<<20 || s.CPUSeconds < 0 {
		t.Fatalf("self %+v %v", s, err)
	}
	busy, err := parseBusy([]byte("cpu  100 20 30 4000 50 6 4 10 0 0\ncpu0 1 2 3\n"))
	if err != nil || busy != 1.7 {
		t.Fatalf("busy %v %v, want 1.7 s", busy, err)
	}
	if _, err := parseBusy([]byte("intr 1 2")); !errors.Is(err, ErrProc) {
		t.Fatalf("bad /proc/stat: %v", err)
	}
	if _, err := ReadProc(1 << 30); !errors.Is(err, ErrProc) {
		t.Fatalf("missing pid: %v", err)
	}
}

// fakeClient replies after delay from a timer; fail makes every n-th
// request fail; drop never replies to every n-th.
type fakeClient struct {
	delay      time.Duration
	failEvery  int64
	dropEvery  int64
	n          atomic.Int64
	maxConn    atomic.Int64
	wg         sync.WaitGroup
	closedOnce sync.Once
}

func (f *fakeClient) Go(conn int, _ []byte, done func(error)) {
	i := f.n.Add(1)
	if int64(conn) > f.maxConn.Load() {
		f.maxConn.Store(int64(conn))
	}
	if f.dropEvery > 0 && i%f.dropEvery == 0 {
		return
	}
	f.wg.Add(1)
	time.AfterFunc(f.delay, func() {
		defer f.wg.Done()
		if f.failEvery > 0 && i%f.failEvery == 0 {
			done(errors.New("fake failure"))
			return
		}
		done(nil)
	})
}

func (f *fakeClient) Close() error { f.wg.Wait(); return nil }

func TestMeasure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &fakeClient{delay: 2 * time.Millisecond, failEvery: 50, dropEvery: 100}
	p := Params{Rate: 2000, Conns: 4, Payload: 16, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond}
	run, err := Measure(ctx, c, p, []Proc{{Role: RoleBench, PID: os.Getpid()}}, 100*time.Millisecond)
	_ = c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if run.Sent != 600 {
		t.Fatalf("sent %d in the window, want 600", run.Sent)
	}
	total := run.OK + run.Errors
	if total < 590 || total > 610 || run.Errors < 10 || run.ErrorKinds["fake failure"] == 0 {
		t.Fatalf("ok %d errors %d kinds %v", run.OK, run.Errors, run.ErrorKinds)
	}
	if c.maxConn.Load() != 3 {
		t.Fatalf("max conn index %d, want 3", c.maxConn.Load())
	}
	if run.Actual.P50 < 2000 || run.Intended.P50 < run.Actual.P50 {
		t.Fatalf("latency intended %+v actual %+v", run.Intended, run.Actual)
	}
	if len(run.Procs) != 1 || run.Procs[0].RSSBytes == 0 {
		t.Fatalf("procs %+v", run.Procs)
	}
	if run.AchievedRPS < 1500 || run.AchievedRPS > 2100 {
		t.Fatalf("achieved %v rps", run.AchievedRPS)
	}
}

func TestMeasureNothingCompletes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &fakeClient{dropEvery: 1}
	_, err := Measure(ctx, c, Params{Rate: 1000, Conns: 1, Duration: 50 * time.Millisecond}, nil, 20*time.Millisecond)
	if !errors.Is(err, ErrNoRequests) {
		t.Fatalf("err %v", err)
	}
}

func sampleReport() *Report {
	p := Params{Rate: 1000, Conns: 1, Payload: 1024, Duration: time.Second}
	// proxy is the role and CPU-s/1k of the scenario's proxy (none when
	// cpu is 0); repeat i adds 10·i µs to p50 and p99, and dRep lets one
	// scenario move differently per repeat (pairing is by repeat).
	mk := func(id string, p50, p99 float64, role string, cpu float64, dRep float64) Result {
		r := Result{Scenario: id, Title: id + " title", Params: p}
		for i := 0; i < 3; i++ {
			d := float64(i) * (10 + dRep)
			run := Run{Repeat: i, Intended: Latency{Avg: p50, P50: p50 + d, P90: p99 / 2, P95: p99 / 1.5, P99: p99 + d, P999: p99 * 2, Max: p99 * 3},
				OK: 1000, AchievedRPS: 1000, Procs: []ProcUsage{{Role: RoleBench, CPUPer1k: 0.02, RSSBytes: 10 << 20}}}
			run.Actual = run.Intended
			if cpu > 0 {
				run.Procs = append(run.Procs, ProcUsage{Role: role, CPUPer1k: cpu, CtxPerReq: 5, RSSBytes: 20 << 20})
			}
			r.Runs = append(r.Runs, run)
		}
		return r
	}
	closed := func(id, role string, cpu float64) Result {
		q := p
		q.Rate, q.InFlight = 0, 128
		return Result{Scenario: id, Title: id, Params: q, Runs: []Run{{OK: 50000, AchievedRPS: 10000,
			Intended: Latency{P50: 1000, P99: 5000}, Procs: []ProcUsage{{Role: role, CPUPer1k: cpu, RSSBytes: 20 << 20}}}}}
	}
	rep := &Report{Machine: ThisMachine(), Repeats: 3, Results: []Result{
		mk("S0", 100, 200, "", 0, 0), mk("S5", 200, 400, "", 0, 0), mk("S3", 230, 700, RoleMeshGate, 0.05, 20), mk("S4", 400, 900, RoleMeshGate, 0.2, 0),
		mk("S6", 300, 600, RoleMeshGate, 0.09, 0), mk("EL7", 300, 800, RoleEnvoyA, 0.1, 0), mk("S1", 130, 250, RoleEnvoyA, 0.04, 0),
		{Scenario: "S1w", Params: p, Skipped: "no wasm"},
		{Scenario: "MPP", Params: p, Skipped: "product lacks private→private (meshgate validate: ...)"},
		closed("S3", RoleMeshGate, 0.04), closed("S6", RoleMeshGate, 0.02), closed("EL7", RoleEnvoyA, 0.05),
	}, Idle: []IdleResult{
		{Scenario: "S3", Kind: "mgp", Conns: 100, Procs: []IdleProc{{Role: RoleMeshGate, RSSIdle: 15 << 20, RSSWarm: 15 << 20, RSSWithConns: 15<<20 + 100*6000, BytesPerConn: 6000}}},
		{Scenario: "S6", Kind: "grpc", Conns: 100, Procs: []IdleProc{{Role: RoleMeshGate, RSSIdle: 25 << 20, RSSWarm: 25 << 20, RSSWithConns: 25<<20 + 100*20000, BytesPerConn: 20000}}},
	}}
	rep.Finish()
	return rep
}

func TestReportRatiosAndTargets(t *testing.T) {
	rep := sampleReport()
	s3 := rep.find("S3", rep.Results[0].Params)
	if s3.Intended.P50.Median != 260 || s3.Intended.P50.Min != 230 || s3.Intended.P50.Max != 290 {
		t.Fatalf("S3 p50 spread %+v", s3.Intended.P50)
	}
	if math.Abs(s3.VsS5.P50-260.0/210) > 1e-9 || math.Abs(s3.VsS0.P99-730.0/210) > 1e-9 {
		t.Fatalf("ratios %+v %+v", s3.VsS5, s3.VsS0)
	}
	// Hops pair repeat i of A with repeat i of B: S3−S5 per repeat is
	// 30, 50, 70 µs (S3 moves 30 µs per repeat, S5 10).
	h := rep.hop("S3", "S5", s3.Params)
	if h == nil || h.Pairs != 3 || h.P50 != (Spread{Median: 50, Min: 30, Max: 70}) || h.Proxy != RoleMeshGate || h.CPUPer1k.Median != 0.05 || h.CtxPerReq.Median != 5 {
		t.Fatalf("S3−S5 hop %+v", h)
	}
	want := map[string]string{
		"private→gRPC hop p50 <= 0.6x Envoy L7 hop (S3−S5 / EL7−S5)":     "PASS", // 50/100
		"gRPC→private hop p50 <= 0.6x Envoy L7 hop (S6−S0 / EL7−S5)":     "MISS", // 200/100
		"MeshGate CPU/request <= 0.7x Envoy L7 (S3 priv→gRPC)":           "PASS", // 0.5
		"MeshGate CPU/request <= 0.7x Envoy L7 (S6 gRPC→priv)":           "MISS", // 0.9
		"MeshGate <= 0.12 CPU-s per 1k requests (stretch)":               "PASS", // worst 0.09
		"MeshGate context switches <= 6 per request":                     "PASS", // 5
		"saturation: MeshGate requests per CPU-s >= 1.5x Envoy L7 (S3)":  "MISS", // 25000/20000
		"saturation: MeshGate requests per CPU-s >= 1.5x Envoy L7 (S6)":  "PASS", // 50000/20000
		"private→private hop p50 <= 2x Envoy tcp_proxy (MPP−S0 / S1−S0)": "N/A",
		"private→private CPU <= 2x Envoy tcp_proxy (MPP / S1)":           "N/A",
		"MeshGate idle RSS <= 20 MB":                                     "MISS", // S6 25 MB
		"<= 8 KB per idle MGP connection (MeshGate, S3)":                 "PASS",
		"<= 12 KB per idle gRPC connection (MeshGate, S6)":               "MISS",
		"S4 p99 < 1 ms (1k rps)":                                         "PASS", // 0.91
	}
	for _, tg := range rep.Targets {
		if want[tg.Name] != tg.Status {
			t.Errorf("%s: %s (%.3f, %s), want %s", tg.Name, tg.Status, tg.Value, tg.Why, want[tg.Name])
		}
		if tg.Status == "N/A" && !strings.Contains(tg.Why, "product lacks private→private") {
			t.Errorf("%s: N/A without the skip reason: %q", tg.Name, tg.Why)
		}
		delete(want, tg.Name)
	}
	if len(want) != 0 {
		t.Fatalf("missing targets %v", want)
	}
	// Without S5 and EL7 the ratio targets are N/A, never PASS.
	rep.Results = rep.Results[2:3]
	rep.Idle = nil
	rep.Finish()
	for _, tg := range rep.Targets {
		if tg.Status == "PASS" && !strings.Contains(tg.Name, "stretch") && !strings.Contains(tg.Name, "context switches") {
			t.Errorf("%s: PASS without its reference: %+v", tg.Name, tg)
		}
	}
	if rep.Targets[0].Status != "N/A" {
		t.Fatalf("targets %+v", rep.Targets)
	}
}

func TestReportOutputs(t *testing.T) {
	rep := sampleReport()
	var tab bytes.Buffer
	rep.WriteTable(&tab)
	for _, s := range []string{"S3", "0.260", "skipped: no wasm", "PASS", "MISS", "meshgate 0.050 / 5.0 / 20M", "Istio + gRPC 6.23 / 14.62",
		"S3−S5", "+0.050 [+0.030–+0.070]", "closed K=128", "25000", "5.9 KB"} {
		if !strings.Contains(tab.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tab.String())
		}
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	for _, s := range []string{"| S3 S3 title | 1 KB × 1000 rps × 1 conn | 0.230 | 0.260 [0.230–0.290]", "skipped: no wasm", "| **PASS** |", "meshgate 0.050 / 5.0 / 20M",
		"| MeshGate private→gRPC | S3 − S5 | 1 KB × 1000 rps × 1 conn | +0.050 [+0.030 – +0.070]", "| 25000 |", "| 5.9 KB |"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != len(rep.Results) || back.Results[2].Intended.P99.Median != 730 || len(back.Hops) != len(rep.Hops) {
		t.Fatalf("json: %v %+v", err, back.Results)
	}
	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&svg)
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	drawn := 0
	for i := range rep.Results {
		if rep.Results[i].ok() {
			drawn++
		}
	}
	if polylines != drawn {
		t.Fatalf("svg has %d lines, want %d (skipped results not drawn)", polylines, drawn)
	}
}

func TestEnvoyBootstrap(t *testing.T) {
	tl := &EnvoyTLS{CertFile: "/c.pem", KeyFile: "/k.pem", CAFile: "/ca.pem", PeerSAN: "b.bench"}
	y, err := EnvoySpec{Name: "a", AdminPort: 1, ListenPort: 2, UpstreamAddr: "127.0.0.1:3", UpstreamTLS: tl,
		WasmFile: "/f.wasm", WasmRootID: "mgp", WasmConfig: `{"x":"y"}`}.Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"port_value: 2", "port_value: 3", "UpstreamTlsContext", `sni: "b.bench"`, `filename: "/f.wasm"`, `value: "{\"x\":\"y\"}"`, "tcp_proxy", "max_connections: 4294967295"} {
		if !strings.Contains(y, s) {
			t.Errorf("bootstrap lacks %q:\n%s", s, y)
		}
	}
	if strings.Contains(y, "DownstreamTlsContext") {
		t.Error("unexpected downstream TLS")
	}
	if _, err := (EnvoySpec{Name: "x", ListenPort: 1, UpstreamAddr: "nohost"}).Bootstrap(); err == nil {
		t.Fatal("incomplete spec accepted")
	}
}
