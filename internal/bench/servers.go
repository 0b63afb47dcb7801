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
		stop := context.AfterFunc(ctx, s.Stop)
		defer stop()
		err := s.Serve(ln)
		if ctx.Err() != nil {
			return nil
		}
		return err
	case "httpjson":
		return serveHTTPJSON(ctx, ln, log)
	case "legacy":
		s := legacy.NewServer(legacy.ServerOptions{Logger: log})
		stop := context.AfterFunc(ctx, func() { _ = s.Close() })
		defer stop()
		err := s.Serve(ln)
		if errors.Is(err, legacy.ErrServerClosed) {
			return nil
		}
		return err
	}
	if ln != nil {
		ln.Close()
	}
	return fmt.Errorf("%w %q", ErrServerKind, kind)
}
