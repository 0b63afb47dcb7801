package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/meshgate/meshgate/codec"
	_ "github.com/meshgate/meshgate/codec/mgp" // registers "mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

func init() {
	register(subcommand{Name: "legacy-server", Short: "reference legacy private-protocol server (echo, uppercase, fail, slow)", Run: runLegacyServer})
	register(subcommand{Name: "legacy-client", Short: "closed-loop load driver against a legacy server; prints a summary", Run: runLegacyClient})
}

func runLegacyServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("legacy-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:7000", "address to listen on")
	latency := fs.Duration("latency", 0, "fixed latency added to every request")
	jitter := fs.Duration("jitter", 0, "random extra latency in [0, jitter) per request (replies out of order)")
	errRate := fs.Float64("error-rate", 0, "fraction of requests answered with result 9 (injected error)")
	codecName := fs.String("codec", "mgp", "private protocol codec")
	maxFrame := fs.Int("max-frame", 0, "maximum frame size (0 = codec default)")
	echoExt := fs.Bool("echo-ext", false, "echo request extensions in replies")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *errRate < 0 || *errRate > 1 {
		return errors.New("-error-rate must be in [0, 1]")
	}
	c, err := codec.New(*codecName, *maxFrame)
	if err != nil {
		return err
	}
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	s := legacy.NewServer(legacy.ServerOptions{Codec: c, Latency: *latency, Jitter: *jitter, ErrorRate: *errRate, EchoExt: *echoExt, Logger: log})
	log.Info("legacy server listening", "addr", ln.Addr().String(), "codec", c.Name(), "latency", *latency, "jitter", *jitter, "error_rate", *errRate)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = s.Shutdown(sctx)
	st := s.Stats()
	log.Info("legacy server stopped", "conns", st.Conns, "requests", st.Requests, "replies", st.Replies,
		"oneway", st.Oneway, "heartbeats", st.Heartbeats, "malformed", st.Malformed, "injected", st.Injected, "unknown_cmd", st.UnknownCmd)
	return err
}

func runLegacyClient(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("legacy-client", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:7000", "legacy server (or MeshGate private listener) address")
	n := fs.Int("n", 10000, "total requests (0 = run for -d)")
	d := fs.Duration("d", 0, "run for this long instead of -n requests")
	c := fs.Int("c", 16, "concurrent workers")
	conns := fs.Int("conns", 1, "connections")
	size := fs.Int("size", 64, "body size in bytes (at least 20: the unique request id)")
	cmd := fs.Uint("cmd", uint(legacy.CmdEcho), "command id (1 echo, 2 uppercase are verified)")
	uin := fs.Uint64("uin", 0, "uin for every request (0 = request id)")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	codecName := fs.String("codec", "mgp", "private protocol codec")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cd, err := codec.New(*codecName, 0)
	if err != nil {
		return err
	}
	r, err := legacy.RunLoad(ctx, legacy.LoadOptions{
		Addr: *addr, Codec: cd, Conns: *conns, Concurrency: *c, Requests: *n, Duration: *d,
		Size: *size, Cmd: uint32(*cmd), UIN: *uin, Timeout: *timeout,
	})
	if r.Count > 0 {
		fmt.Println(r)
	}
	if err != nil {
		return err
	}
	if r.Errors > 0 {
		return fmt.Errorf("%d of %d requests failed", r.Errors, r.Count)
	}
	return nil
}
