package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/meshgate/demo"
	"github.com/meshgate/meshgate/meshgate/legacy"
)

// Wasm filter plugin settings (S1w).
const (
	WasmRootID = "mgp"
	WasmConfig = "{}"
)

type certFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey, ServerName string
}

func (e *env) certFiles() (*certFiles, error) {
	d := os.Getenv("BENCH_TMP_CERTS")
	if d == "" {
		return nil, errors.New("certgen pending")
	}
	return &certFiles{CA: d + "/ca.pem", ServerCert: d + "/server.pem", ServerKey: d + "/server.key", ClientCert: d + "/client.pem", ClientKey: d + "/client.key", ServerName: "meshgate.bench"}, nil
}

// ErrServerKind reports an unknown backend server kind.
var ErrServerKind = errors.New("bench: unknown server kind")

// Serve runs a backend server of kind "legacy" or "grpc" on ln until ctx
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
	ln.Close()
	return fmt.Errorf("%w %q", ErrServerKind, kind)
}

func (e *env) startEnvoy(ctx context.Context, t *topology, role string, spec EnvoySpec) (string, error) {
	ps, err := ports(2)
	if err != nil {
		return "", err
	}
	spec.AdminPort, spec.ListenPort = ps[0], ps[1]
	y, err := spec.Bootstrap()
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, spec.Name+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		return "", err
	}
	p, err := startSubproc(spec.Name, e.dir, e.opts.EnvoyBin, "-c", path, "--concurrency", strconv.Itoa(e.opts.EnvoyConcurrency), "--disable-hot-restart", "-l", "warning")
	if err != nil {
		return "", err
	}
	t.closers = append(t.closers, p.stop)
	t.procs = append(t.procs, Proc{Role: role, PID: p.pid()})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr(spec.AdminPort) + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr(spec.ListenPort), nil
			}
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("%w: %s: %v\n%s", ErrNotReady, spec.Name, err, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
