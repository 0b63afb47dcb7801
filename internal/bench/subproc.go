package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/internal/freeport"
	"github.com/meshgate/meshgate/internal/proc"
)

// subproc is a child process the suite started (MeshGate, a server).
type subproc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startSubproc starts bin with args, its stdout and stderr going to
// dir/name.log.
func startSubproc(name, dir, bin string, args ...string) (*subproc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p := &subproc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *subproc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *subproc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the last bytes of the process's log.
func (p *subproc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// stop sends SIGTERM and waits, then SIGKILL.
func (p *subproc) stop() error {
	if proc.Terminate(p.cmd.Process, p.done, 5*time.Second) {
		return fmt.Errorf("bench: %s did not stop on SIGTERM", p.name)
	}
	return nil
}

// freePort returns a loopback port outside the ephemeral range, so no
// topology's port-0 listener or connection takes it first.
func freePort() (int, error) { return freeport.Pick() }

// ErrNotReady reports a component that did not come up.
var ErrNotReady = errors.New("bench: component not ready")

// waitTCP waits until addr accepts connections, p (if not nil) is alive
// and ctx allows.
func waitTCP(ctx context.Context, addr string, p *subproc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%w: %s exited: %v\n%s", ErrNotReady, p.name, p.err, p.logTail())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			tail := ""
			if p != nil {
				tail = "\n" + p.logTail()
			}
			return fmt.Errorf("%w: %s not accepting after %s: %v%s", ErrNotReady, addr, timeout, err, tail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
