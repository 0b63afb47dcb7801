package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meshgate/meshgate/internal/envoyproc"
	"github.com/meshgate/meshgate/internal/testpki"
)

// Wasm filter plugin settings (S1w).
const (
	WasmRootID = "mgp"
	WasmConfig = "{}"
)

// certFiles are the mTLS files of the Envoy pair (S2, S4).
type certFiles struct {
	CA                    string
	ClientCert, ClientKey string // envoy-a
	ServerCert, ServerKey string // envoy-b
	ServerName            string // DNS SAN of envoy-b's certificate
}

// certFiles creates (once) a CA and a leaf per Envoy with testpki.
func (e *env) certFiles() (*certFiles, error) {
	if e.certs != nil {
		return e.certs, nil
	}
	dir := filepath.Join(e.dir, "certs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	_, set, err := testpki.WriteSet(dir, "envoy-a", "envoy-b")
	if err != nil {
		return nil, err
	}
	a, b := set["envoy-a"], set["envoy-b"]
	e.certs = &certFiles{CA: a.CAFile, ClientCert: a.CertFile, ClientKey: a.KeyFile,
		ServerCert: b.CertFile, ServerKey: b.KeyFile, ServerName: "envoy-b"}
	return e.certs, nil
}

// startEnvoy starts a real Envoy (envoyproc) with spec's bootstrap on a
// fresh listener port, waits for /ready and returns the listener address.
func (e *env) startEnvoy(ctx context.Context, t *topology, role string, spec EnvoySpec) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	spec.ListenPort = port
	y, err := spec.Bootstrap()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(e.dir, spec.Name+"-"+t.id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ev, err := envoyproc.Start(ctx, envoyproc.Options{
		Bootstrap: []byte(y), Bin: e.opts.EnvoyBin, Dir: dir,
		Concurrency: e.opts.EnvoyConcurrency, LogLevel: "warning",
		ReadyTimeout: 30 * time.Second, Logger: e.log,
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec.Name, err)
	}
	t.closers = append(t.closers, ev.Stop)
	if t.envoys == nil {
		t.envoys = map[string]*envoyproc.Envoy{}
	}
	t.envoys[role] = ev
	t.procs = append(t.procs, Proc{Role: role, PID: ev.Pid()})
	a := addr(port)
	if err := waitTCP(ctx, a, nil, 10*time.Second); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", spec.Name, err, ev.Log())
	}
	return a, nil
}

// WasmRequestsStat is the Envoy counter the MGP filter bumps per echo
// request (custom wasm metrics are prefixed "wasmcustom.").
var WasmRequestsStat = fmt.Sprintf("wasmcustom.mgp.cmd.%d.requests", EchoCmd)

// checkWasmOnPath sends one echo through in and requires the filter's
// request counter on ev to move: S1w must measure the filter, not a
// listener that silently lacks it.
func checkWasmOnPath(ctx context.Context, in string, ev *envoyproc.Envoy) error {
	c, err := DialLegacy(in, 1)
	if err != nil {
		return err
	}
	_ = c.Close()
	for {
		if ev.Stat(WasmRequestsStat) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: wasm filter not on the path: %s stayed 0", WasmRequestsStat)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
