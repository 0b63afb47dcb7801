package bench

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/meshgate/meshgate/internal/envoyproc"
)

// TestEchoDescriptorSet checks the run-time descriptor set describes
// demo.Echo/Echo(Msg) returns (Msg) with a string field body, the way
// Envoy's transcoder will read it.
func TestEchoDescriptorSet(t *testing.T) {
	b, err := EchoDescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(TranscoderService))
	if err != nil {
		t.Fatal(err)
	}
	m := d.(protoreflect.ServiceDescriptor).Methods().ByName("Echo")
	if m == nil || m.Input().FullName() != "demo.Msg" || m.Output().FullName() != "demo.Msg" || m.IsStreamingClient() || m.IsStreamingServer() {
		t.Fatalf("method %v", m)
	}
	f := m.Input().Fields().ByName("body")
	if f == nil || f.Kind() != protoreflect.StringKind || f.JSONName() != "body" || f.Number() != 1 {
		t.Fatalf("field %v", f)
	}
	if "/"+string(d.FullName())+"/"+string(m.Name()) != JSONPath {
		t.Fatalf("JSON path %s does not match the auto-mapped method", JSONPath)
	}
}

// TestEnvoyHTTPBootstrapValidates renders the L7 and transcoder
// bootstraps and has the real Envoy check them (--mode validate), so a
// typo in a type URL or field fails here, not in the middle of a run.
func TestEnvoyHTTPBootstrapValidates(t *testing.T) {
	dir := t.TempDir()
	ds, err := EchoDescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	pb := filepath.Join(dir, "echo.pb")
	if err := os.WriteFile(pb, ds, 0o644); err != nil {
		t.Fatal(err)
	}
	specs := map[string]EnvoySpec{
		"l7":         {Name: "a", ListenPort: 2, UpstreamAddr: "127.0.0.1:3", HTTP: &EnvoyHTTP{}},
		"transcoder": {Name: "a", ListenPort: 2, UpstreamAddr: "127.0.0.1:3", HTTP: &EnvoyHTTP{DescriptorFile: pb, Services: []string{TranscoderService}}},
	}
	bin, _ := envoyproc.Find()
	for name, spec := range specs {
		y, err := spec.Bootstrap()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"http_connection_manager", "http2_protocol_options", "envoy.filters.http.router", "port_value: 3"} {
			if !strings.Contains(y, s) {
				t.Errorf("%s lacks %q", name, s)
			}
		}
		if strings.Contains(y, "tcp_proxy") || (name == "transcoder") != strings.Contains(y, "grpc_json_transcoder") {
			t.Errorf("%s: wrong filters:\n%s", name, y)
		}
		if bin == "" {
			continue
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", path, "--base-id", "7331").CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("envoy rejects the %s bootstrap: %v\n%s\n%s", name, err, out, y)
		}
	}
	if bin == "" {
		t.Log("no Envoy: bootstraps checked textually only")
	}
	if _, err := (EnvoySpec{Name: "x", ListenPort: 1, UpstreamAddr: "127.0.0.1:3", HTTP: &EnvoyHTTP{}, UpstreamTLS: &EnvoyTLS{}}).Bootstrap(); err == nil {
		t.Fatal("HTTP mode with TLS accepted")
	}
}

// TestCtxSwitches parses a status file and reads this process's threads.
func TestCtxSwitches(t *testing.T) {
	st := []byte("Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n")
	if n := parseCtxSwitches(st); n != 127 {
		t.Fatalf("parsed %d, want 127", n)
	}
	before, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Every blocking sleep is a voluntary switch of some thread.
	for range 20 {
		time.Sleep(time.Millisecond)
	}
	after, _ := ReadProc(os.Getpid())
	if after.CtxSwitches <= before.CtxSwitches {
		t.Fatalf("context switches did not move: %d → %d", before.CtxSwitches, after.CtxSwitches)
	}
}

// TestRunSuiteAnchorsInProcess runs, against real in-process servers and
// real clients over loopback: HJ (HTTP/1.1 JSON), S0 and S5 in open loop
// and closed loop, plus idle mode; EL7 and MPP must be reported skipped.
func TestRunSuiteAnchorsInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := Params{Conns: 1, Payload: 1024, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond}
	open, closed := base, base
	open.Rate, closed.InFlight = 500, 8
	rep, err := RunSuite(ctx, Options{
		Scenarios: []string{"S0", "S5", "HJ", "EL7", "MPP"},
		Params:    []Params{open, closed}, Repeats: 2, InProcServers: true, IdleConns: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		switch r.Scenario {
		case "EL7", "MPP":
			if r.Skipped == "" {
				t.Errorf("%s not skipped: %+v", r.Scenario, r)
			}
			continue
		}
		if r.Error != "" || r.Errors != 0 || len(r.Runs) != 2 {
			t.Errorf("%s %s: error %q, %d errors, %d runs", r.Scenario, r.Params, r.Error, r.Errors, len(r.Runs))
			continue
		}
		if r.Params.Closed() {
			// Closed loop with 8 in flight on loopback outruns 500 rps.
			if r.OK < 2*150 || r.RPS.Median <= 0 {
				t.Errorf("%s closed: %d ok, %.0f rps", r.Scenario, r.OK, r.RPS.Median)
			}
		} else if r.OK < 250 || r.OK > 320 {
			t.Errorf("%s: %d ok over 2 × 0.3 s at 500 rps", r.Scenario, r.OK)
		}
		if r.Procs[0].Role != RoleBench || r.Procs[0].CtxPerReq.Median <= 0 {
			t.Errorf("%s: no context switches measured: %+v", r.Scenario, r.Procs[0])
		}
	}
	// No scenario here has a proxy: idle mode measures proxies only.
	if len(rep.Idle) != 0 {
		t.Errorf("idle without a proxy scenario: %+v", rep.Idle)
	}
}

// TestMeasureIdle opens idle MGP connections to a real in-process legacy
// server and reads this process's RSS (it hosts both ends): the RSS must
// grow and the per-connection figure must be positive.
func TestMeasureIdle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e := &env{opts: Options{InProcServers: true}, dir: t.TempDir()}
	e.log = slogDiscard()
	topo, err := setupS0(ctx, e, &topology{id: "S0"})
	if err != nil {
		t.Fatal(err)
	}
	defer topo.close()
	topo.procs = []Proc{{Role: RoleBench, PID: os.Getpid()}}
	l := &live{sc: Scenario{ID: "S0", Title: "t", Proxy: RoleBench}, topo: topo}
	r := measureIdle(ctx, e, l, 300)
	if r.Error != "" || r.Kind != "mgp" || r.Conns != 300 {
		t.Fatalf("%+v", r)
	}
	p := r.proc(RoleBench)
	if p == nil || p.RSSIdle <= 0 || p.RSSWarm <= 0 || p.RSSWithConns <= p.RSSWarm || p.BytesPerConn <= 0 {
		t.Fatalf("idle %+v", p)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestProductAcceptsSkips checks the one function that turns the product's
// `meshgate validate` verdict into a skip: a stand-in script plays the
// binary (exit 1 with a field error; exit 0), and a missing binary is an
// error, never a skip.
func TestProductAcceptsSkips(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	topo := &topology{id: "MPP"}
	e := &env{dir: dir, opts: Options{MeshGate: script("reject", `echo 'listeners[0].routes[0].upstream: needs a grpc upstream'; exit 1`)}}
	_, err := e.productAccepts(ctx, topo, "mg", "listeners: []\n", "private→private")
	if why := isSkip(err); !strings.Contains(why, "product lacks private→private") || !strings.Contains(why, "listeners[0].routes[0].upstream") {
		t.Fatalf("rejected config: err %v, skip %q", err, why)
	}
	e.opts.MeshGate = script("accept", `[ "$1" = validate ] && [ "$2" = -c ] && [ -f "$3" ] && echo OK`)
	path, err := e.productAccepts(ctx, topo, "mg", "listeners: []\n", "private→private")
	if err != nil || filepath.Dir(path) != dir {
		t.Fatalf("accepted config: %q %v", path, err)
	}
	e.opts.MeshGate = filepath.Join(dir, "missing")
	if _, err := e.productAccepts(ctx, topo, "mg", "listeners: []\n", "x"); err == nil || isSkip(err) != "" {
		t.Fatalf("missing binary: %v (must fail, not skip)", err)
	}
}
