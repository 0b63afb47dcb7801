package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/demo"
	"github.com/meshgate/meshgate/meshgate/legacy"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/runtime"
)

// Fixed loopback addresses of the bundled peers the embedded config bridges.
const (
	demoLegacyAddr = "127.0.0.1:7100"
	demoGRPCAddr   = "127.0.0.1:7101"
)

func init() {
	register(subcommand{name: "run", short: "run the bridge (no -c: embedded demo config with bundled peers)", run: runCmd})
}

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("c", "", "config file; reloaded on change and SIGHUP (default: embedded demo config)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	traffic := fs.Duration("demo-traffic", 2*time.Second, "with the embedded config: send a demo request each way this often (0 = off)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	embedded := *path == ""
	log.Info("starting", "config", *path, "embedded", embedded)
	hup := newHupHandler(log, sighup, embedded)
	defer hup.stop()

	var cfg *config.Config
	var err error
	var stopPeers func()
	if embedded {
		if cfg, err = runtime.Parse(nil, ""); err != nil {
			return err
		}
		if stopPeers, err = startDemoPeers(log); err != nil {
			return err
		}
		defer stopPeers()
	} else if cfg, err = config.Load(*path); err != nil {
		return err
	}

	rt, err := runtime.New(cfg, runtime.Options{Logger: log})
	if err != nil {
		return err
	}
	log.Info("admin", "url", "http://"+rt.AdminAddr().String(), "endpoints", "/healthz /readyz /metrics /config /debug/pprof")
	watchDone := make(chan struct{})
	wctx, wcancel := context.WithCancel(ctx)
	reloads := hup.running() // a SIGHUP received during start-up is delivered now
	if embedded {
		log.Info("demo: MGP/1 → gRPC", "send_mgp_to", addrOf(rt, "mgp-in"), "cmds", "1 Echo, 2 Upper, 3 Fail, 4 Sleep, 5 Meta", "grpc_service", demoGRPCAddr)
		log.Info("demo: gRPC → MGP/1", "send_grpc_to", addrOf(rt, "grpc-in"), "methods", "/legacy.Legacy/{Echo,Uppercase,Fail,Slow}", "legacy_server", demoLegacyAddr)
		log.Info("try: meshgate legacy-client -addr " + addrOf(rt, "mgp-in") + "   or curl " + "http://" + rt.AdminAddr().String() + "/metrics")
		go func() {
			defer close(watchDone)
			if *traffic > 0 {
				demoTraffic(wctx, log, addrOf(rt, "mgp-in"), addrOf(rt, "grpc-in"), *traffic)
			}
		}()
	} else {
		go func() {
			defer close(watchDone)
			if err := rt.Watch(wctx, *path, reloads); err != nil {
				log.Error("config watch stopped", "err", err)
			}
		}()
	}
	<-ctx.Done()
	hup.draining()
	log.Info("signal received: draining", "timeout", cfg.Defaults.DrainTimeout)
	wcancel()
	<-watchDone
	err = rt.Shutdown(context.Background())
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

func addrOf(rt *runtime.Runtime, name string) string {
	if a := rt.Addr(name); a != nil {
		return a.String()
	}
	return "(not running)"
}

// startDemoPeers runs the reference legacy server and the demo gRPC
// service on their fixed loopback ports.
func startDemoPeers(log *slog.Logger) (func(), error) {
	ls := legacy.NewServer(legacy.ServerOptions{Logger: log, EchoExt: true})
	if err := ls.Listen(demoLegacyAddr); err != nil {
		return nil, fmt.Errorf("bundled legacy server: %w", err)
	}
	gln, err := net.Listen("tcp", demoGRPCAddr)
	if err != nil {
		ls.Close()
		return nil, fmt.Errorf("bundled demo gRPC service: %w", err)
	}
	gs := demo.NewServer()
	go func() { _ = gs.Serve(gln) }()
	log.Info("bundled peers up", "legacy_mgp_server", demoLegacyAddr, "demo_grpc_service", demoGRPCAddr)
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

// hupHandler owns SIGHUP for the whole life of `meshgate run`. During
// start-up a SIGHUP is queued and delivered as one reload once the runtime
// runs; while running each SIGHUP asks for a reload; while draining, and
// always with the embedded config (there is no file to re-read), it is
// logged and ignored.
type hupHandler struct {
	log      *slog.Logger
	embedded bool
	reload   chan struct{} // capacity 1: reload requests coalesce
	mu       sync.Mutex
	state    int // hupStarting, hupRunning, hupDraining
	pending  bool
	quit     chan struct{}
	done     chan struct{}
}

const (
	hupStarting = iota
	hupRunning
	hupDraining
)

func newHupHandler(log *slog.Logger, sig <-chan os.Signal, embedded bool) *hupHandler {
	h := &hupHandler{log: log, embedded: embedded, reload: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.quit:
				return
			case <-sig:
				h.onHUP()
			}
		}
	}()
	return h
}

func (h *hupHandler) onHUP() {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.embedded:
		h.log.Warn("SIGHUP ignored: running the embedded config, there is no file to reload")
	case h.state == hupStarting:
		h.pending = true
		h.log.Info("SIGHUP during start-up: reload queued until started")
	case h.state == hupRunning:
		h.log.Info("SIGHUP: reloading")
		h.request()
	default:
		h.log.Warn("SIGHUP ignored: draining")
	}
}

func (h *hupHandler) request() {
	select {
	case h.reload <- struct{}{}:
	default: // one is already pending
	}
}

// running marks start-up done and returns the reload requests; a SIGHUP
// queued during start-up is already in it.
func (h *hupHandler) running() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state = hupRunning
	if h.pending {
		h.pending = false
		h.request()
	}
	return h.reload
}

func (h *hupHandler) draining() {
	h.mu.Lock()
	h.state = hupDraining
	h.mu.Unlock()
}

func (h *hupHandler) stop() {
	h.draining()
	close(h.quit)
	<-h.done
}
