// Package harness holds helpers shared by the end-to-end tests: locating or
// building the meshgate and meshgate-dev binaries, starting processes with
// their output captured (and printed when the test fails), waiting for
// conditions with a deadline, and:
//
//   - StartMeshgate, the one way to run `meshgate run`: the config puts
//     listeners, admin, health and xds on port 0 and the addresses are read
//     back from -address-file (meshgate.go);
//   - MetricSum, samples of a Prometheus text exposition (metrics.go).
//
// harness imports only the standard library, internal/proc and
// internal/freeport (both standard library only; deploy/e2e uses harness too); the
// in-process peers and clients of the e2e tests are in e2e/helpers_test.go.
//
// FreePort/FreeAddr remain only for ports that must be known before any
// process binds them (Envoy listeners configured over xDS, and the MeshGate
// listeners those route to).
package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/freeport"
	"github.com/meshgate/meshgate/internal/proc"
)

// builds caches one `go build` per package per test binary.
var builds sync.Map // package path -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

// RepoRoot returns the module root (the directory holding go.mod), found
// from this source file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// MeshgateBin returns the product binary: $MESHGATE_BIN, or builds
// ./meshgate/cmd/meshgate once per test binary into a temporary directory.
func MeshgateBin(t testing.TB) string {
	t.Helper()
	return binary(t, "MESHGATE_BIN", "./meshgate/cmd/meshgate", "meshgate")
}

// MeshgateDevBin returns the tools binary (legacy-server, legacy-client,
// call, bench, demo): $MESHGATE_DEV_BIN, or builds ./cmd/meshgate-dev once
// per test binary into a temporary directory.
func MeshgateDevBin(t testing.TB) string {
	t.Helper()
	return binary(t, "MESHGATE_DEV_BIN", "./cmd/meshgate-dev", "meshgate-dev")
}

// binary returns $env, or builds pkg once as name.
func binary(t testing.TB, env, pkg, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	v, _ := builds.LoadOrStore(pkg, &build{})
	b := v.(*build)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "meshgate-e2e-bin-")
		if err != nil {
			b.err = err
			return
		}
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = RepoRoot()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, o)
			return
		}
		b.path = out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// FreePort returns a loopback TCP port that is free now, from outside the
// kernel's ephemeral range so no port-0 listener or outgoing connection can
// take it before it is used (freeport.Pick). Prefer port 0 and reading the
// address back (StartMeshgate; in e2e, envoyListener and testkit.Listen).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreeAddr returns "127.0.0.1:PORT" with a free port.
func FreeAddr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a started process with captured output.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
	once sync.Once
}

// Start starts name with args, capturing stdout+stderr. On test cleanup
// the process is stopped (SIGTERM, then SIGKILL after 5s) and, if the test
// failed, its output is logged.
func Start(t testing.TB, label, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: label, Cmd: exec.Command(name, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.Cmd.Stdout = p.out
	p.Cmd.Stderr = p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", label, p.Output())
		}
	})
	return p
}

// Output is everything the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM, waits up to 5s, then kills. Safe to call twice.
func (p *Proc) Stop() {
	p.once.Do(func() { proc.Terminate(p.Cmd.Process, p.done, 5*time.Second) })
}

// Eventually polls cond every 50ms until it returns nil or timeout passes,
// then fails the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HTTPGet GETs url with a 5s timeout and returns the status and body.
func HTTPGet(url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), err
}

// WaitHTTP200 waits until url answers 200.
func WaitHTTP200(t testing.TB, timeout time.Duration, url string) {
	t.Helper()
	Eventually(t, timeout, "200 from "+url, func() error {
		code, body, err := HTTPGet(url)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("status %d: %s", code, strings.TrimSpace(body))
		}
		return nil
	})
}

// WaitTCP waits until addr accepts TCP connections.
func WaitTCP(t testing.TB, timeout time.Duration, addr string) {
	t.Helper()
	Eventually(t, timeout, "tcp "+addr, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// WriteFile writes data to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	wasmOnce sync.Once
	wasmPath string
	wasmErr  error
)

// WasmFilter returns $MESHGATE_WASM, or builds the MGP proxy-wasm filter
// (filters/, GOOS=wasip1) once per test binary into a temporary directory.
func WasmFilter(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MESHGATE_WASM"); p != "" {
		return p
	}
	wasmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshgate-e2e-wasm-")
		if err != nil {
			wasmErr = err
			return
		}
		out := filepath.Join(dir, "mgp_filter.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./mgpfilter")
		cmd.Dir = filepath.Join(RepoRoot(), "filters")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			wasmErr = fmt.Errorf("build wasm filter: %v\n%s", err, b)
			return
		}
		wasmPath = out
	})
	if wasmErr != nil {
		t.Fatal(wasmErr)
	}
	return wasmPath
}

// WaitOutput polls the process's output until it holds every want.
func (p *Proc) WaitOutput(t testing.TB, timeout time.Duration, want ...string) {
	t.Helper()
	Eventually(t, timeout, p.Name+" output "+strings.Join(want, ", "), func() error {
		out := p.Output()
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("no %s", w)
			}
		}
		return nil
	})
}

// Exited waits up to timeout for the process to exit and returns its exit
// code.
func (p *Proc) Exited(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", p.Name, timeout)
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Tool finds a command-line tool that `make deps` installs (ghz,
// grpcurl): on PATH, in the repository's bin/tools, or in $GOPATH/bin.
// Missing, it fails the test under CI=true and skips it otherwise.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	cands := []string{filepath.Join(RepoRoot(), "bin", "tools", name)}
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		cands = append(cands, filepath.Join(strings.TrimSpace(string(gp)), "bin", name))
	}
	for _, p := range cands {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed: run `make deps` (installs it into bin/tools)", name)
	}
	t.Skipf("%s not installed (run `make deps`); skipped outside CI only (CI=true fails)", name)
	return ""
}
