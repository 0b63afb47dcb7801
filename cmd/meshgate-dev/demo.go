package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// demoConfig is the demo's MeshGate config (demo.yaml): listeners mgp-in
// (:7000) and grpc-in (:7001), upstreams demo-grpc (:7101) and legacy
// (:7100), admin on :9901.
//
//go:embed demo.yaml
var demoConfig []byte

func init() {
	register(subcommand{Name: "demo", Short: "local demo: bundled legacy server + demo gRPC service, `meshgate run` as a child, periodic traffic", Run: demoCmd})
}

// demoAddrs are the addresses the demo takes from its config.
type demoAddrs struct {
	legacy, grpc  string // peers started in-process (first endpoint of upstreams legacy, demo-grpc)
	mgpIn, grpcIn string // MeshGate listeners the traffic goes to
	admin         string
}

// demoAddrsOf reads the demo's addresses from cfg by name: upstreams
// "legacy" and "demo-grpc", listeners "mgp-in" and "grpc-in".
func demoAddrsOf(cfg *config.Config) (demoAddrs, error) {
	d := demoAddrs{admin: cfg.Admin.Address}
	for _, u := range cfg.Upstreams {
		switch {
		case u.Name == "legacy" && len(u.Endpoints) > 0:
			d.legacy = u.Endpoints[0]
		case u.Name == "demo-grpc" && len(u.Endpoints) > 0:
			d.grpc = u.Endpoints[0]
		}
	}
	for _, l := range cfg.Listeners {
		switch l.Name {
		case "mgp-in":
			d.mgpIn = l.Address
		case "grpc-in":
			d.grpcIn = l.Address
		}
	}
	switch {
	case d.legacy == "":
		return d, errors.New("demo config: no upstreams[] entry named legacy with an endpoint (the bundled legacy server listens there)")
	case d.grpc == "":
		return d, errors.New("demo config: no upstreams[] entry named demo-grpc with an endpoint (the demo gRPC service listens there)")
	case d.mgpIn == "":
		return d, errors.New("demo config: no listeners[] entry named mgp-in (demo traffic is sent there)")
	case d.grpcIn == "":
		return d, errors.New("demo config: no listeners[] entry named grpc-in (demo traffic is sent there)")
	}
	return d, nil
}

// demoCmd is `meshgate-dev demo`: it starts the reference legacy server
// and the demo gRPC service in-process, runs the product binary
// `meshgate run -c CONFIG` as a child process (SIGINT, SIGTERM and SIGHUP
// are forwarded to it), and sends a request each way periodically.
func demoCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	cfgPath := fs.String("c", "", "MeshGate config for the demo (default: the embedded demo config, written to a temporary file); "+
		"the peers listen on the first endpoint of upstreams legacy and demo-grpc, traffic goes to listeners mgp-in and grpc-in")
	product := fs.String("meshgate", "", "product binary (default $MESHGATE_BIN, meshgate beside meshgate-dev, or meshgate on PATH)")
	var lvl slog.Level
	fs.TextVar(&lvl, "log-level", slog.LevelInfo, "log level of the demo and of meshgate: debug, info, warn, error")
	traffic := fs.Duration("traffic", 2*time.Second, "send a demo request each way this often (0 = off)")
	stopTimeout := fs.Duration("stop-timeout", 30*time.Second, "kill meshgate if it has not exited this long after SIGINT/SIGTERM was forwarded")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("component", "demo")
	bin, err := findMeshgate(*product)
	if err != nil {
		return err
	}
	path := *cfgPath
	if path == "" {
		dir, err := os.MkdirTemp("", "meshgate-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "meshgate.yaml")
		if err := os.WriteFile(path, demoConfig, 0o600); err != nil {
			return err
		}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	addrs, err := demoAddrsOf(cfg)
	if err != nil {
		return err
	}
	stopPeers, err := startDemoPeers(log, addrs.legacy, addrs.grpc)
	if err != nil {
		return err
	}
	defer stopPeers()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cmd := exec.Command(bin, "run", "-c", path, "-log-level", lvl.String())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	log.Info("meshgate started", "pid", cmd.Process.Pid, "binary", bin, "config", path,
		"note", "edit the config file to hot-reload; SIGHUP to this process is forwarded")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	tctx, tcancel := context.WithCancel(context.Background())
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		if !waitReady(tctx, "http://"+addrs.admin+"/readyz", 20*time.Second) {
			if tctx.Err() == nil {
				log.Warn("meshgate not ready after 20s; no demo traffic", "readyz", "http://"+addrs.admin+"/readyz")
			}
			return
		}
		log.Info("MGP/1 → gRPC", "send_mgp_to", addrs.mgpIn, "cmds", "1 Echo, 2 Upper, 3 Fail, 4 Sleep, 5 Meta", "grpc_service", addrs.grpc)
		log.Info("gRPC → MGP/1", "send_grpc_to", addrs.grpcIn, "methods", "/legacy.Legacy/{Echo,Uppercase,Fail,Slow}", "legacy_server", addrs.legacy)
		log.Info("try: meshgate-dev call mgp -addr " + addrs.mgpIn + " -cmd 2 -data hi   or   meshgate-dev call grpc -addr " + addrs.grpcIn +
			" -method /legacy.Legacy/Uppercase   or   curl http://" + addrs.admin + "/metrics")
		if *traffic > 0 {
			demoTraffic(tctx, log, addrs.mgpIn, addrs.grpcIn, *traffic)
		}
	}()
	defer func() { tcancel(); <-trafficDone }()

	stopping := false
	var kill <-chan time.Time
	ctxDone := ctx.Done()
	forward := func(s os.Signal) {
		if err := cmd.Process.Signal(s); err != nil && !errors.Is(err, os.ErrProcessDone) {
			log.Warn("forward signal", "signal", s, "err", err)
		}
	}
	stop := func(s os.Signal) {
		if stopping {
			return
		}
		stopping = true
		tcancel()
		log.Info("stopping meshgate", "signal", s)
		forward(s)
		kill = time.After(*stopTimeout)
	}
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				log.Info("forwarding SIGHUP to meshgate (config reload)")
				forward(s)
				continue
			}
			stop(s)
		case <-ctxDone:
			ctxDone = nil
			stop(syscall.SIGTERM)
		case <-kill:
			kill = nil
			log.Warn("meshgate did not exit in time; killing it", "stop_timeout", *stopTimeout)
			_ = cmd.Process.Kill()
		case err := <-exited:
			switch {
			case err != nil:
				return fmt.Errorf("meshgate run: %w", err)
			case !stopping:
				return errors.New("meshgate run exited on its own")
			}
			log.Info("meshgate exited; stopping the bundled peers")
			return nil
		}
	}
}

// waitReady polls url until it answers 200, ctx ends or timeout passes.
func waitReady(ctx context.Context, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// startDemoPeers runs the reference legacy server on legacyAddr and the
// demo gRPC service on grpcAddr.
func startDemoPeers(log *slog.Logger, legacyAddr, grpcAddr string) (func(), error) {
	ls := legacy.NewServer(legacy.ServerOptions{Logger: log, EchoExt: true})
	if err := ls.Listen(legacyAddr); err != nil {
		return nil, fmt.Errorf("bundled legacy server: %w", err)
	}
	gln, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		ls.Close()
		return nil, fmt.Errorf("bundled demo gRPC service: %w", err)
	}
	gs := demo.NewServer()
	go func() { _ = gs.Serve(gln) }()
	log.Info("bundled peers up", "legacy_mgp_server", legacyAddr, "demo_grpc_service", grpcAddr)
	return func() { gs.Stop(); ls.Close() }, nil
}

// demoTraffic sends one request each way every interval and logs the
// outcome, so `make run` shows traffic flowing.
func demoTraffic(ctx context.Context, log *slog.Logger, mgpAddr, grpcAddr string, every time.Duration) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	cl, err := legacy.Dial(dctx, mgpAddr, legacy.ClientOptions{})
	cancel()
	if err != nil {
		log.Warn("demo traffic: dial", "err", err)
		return
	}
	defer cl.Close()
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		log.Warn("demo traffic: grpc client", "err", err)
		return
	}
	defer cc.Close()
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		body := fmt.Sprintf("hello #%d", n)
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		start := time.Now()
		r, err := cl.Call(cctx, 2, uint64(n), []byte(body), nil)
		if err != nil {
			log.Info("demo MGP→gRPC", "err", err)
		} else {
			log.Info("demo MGP→gRPC", "cmd", 2, "sent", body, "got", string(r.Body), "result", r.Result, "rtt", time.Since(start))
		}
		start = time.Now()
		var out []byte
		err = cc.Invoke(cctx, "/legacy.Legacy/Uppercase", []byte(body), &out)
		cancel()
		if err != nil {
			log.Info("demo gRPC→MGP", "err", err)
		} else {
			log.Info("demo gRPC→MGP", "method", "/legacy.Legacy/Uppercase", "sent", body, "got", string(out), "rtt", time.Since(start))
		}
	}
}
