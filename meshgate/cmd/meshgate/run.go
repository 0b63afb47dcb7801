package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
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
	logFormat := fs.String("log-format", "text", "log format: text or json (one JSON object per line)")
	traffic := fs.Duration("demo-traffic", 2*time.Second, "with the embedded config: send a demo request each way this often (0 = off)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return err
	}
	log, err := newLogger(os.Stderr, *logFormat, lvl)
	if err != nil {
		return err
	}

	var cfg *config.Config
	embedded := *path == ""
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
			if err := rt.Watch(wctx, *path); err != nil {
				log.Error("config watch stopped", "err", err)
			}
		}()
	}
	<-ctx.Done()
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
