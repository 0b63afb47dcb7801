package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

// ErrServerKind reports an unknown backend server kind.
var ErrServerKind = errors.New("bench: unknown server kind")

// Serve runs a backend server of kind "legacy", "grpc" or "httpjson" on ln until ctx
// ends.
func Serve(ctx context.Context, kind string, ln net.Listener, log *slog.Logger) error {
	switch kind {
	case "grpc":
		s := demo.NewServer()
		return serveUntil(ctx, func() error { return s.Serve(ln) }, s.Stop)
	case "httpjson":
		return serveHTTPJSON(ctx, ln, log)
	case "legacy":
		s := legacy.NewServer(legacy.ServerOptions{Logger: log})
		return serveUntil(ctx, func() error { return s.Serve(ln) }, func() { _ = s.Close() })
	}
	if ln != nil {
		ln.Close()
	}
	return fmt.Errorf("%w %q", ErrServerKind, kind)
}

// serveUntil runs serve until ctx ends, then calls stop; what serve returns
// once stopped (the server's "closed" error) is not an error.
func serveUntil(ctx context.Context, serve func() error, stop func()) error {
	after := context.AfterFunc(ctx, stop)
	defer after()
	err := serve()
	if ctx.Err() != nil {
		return nil
	}
	return err
}
