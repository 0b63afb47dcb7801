// Package proc stops the child processes the test harness, the Envoy
// runner and the bench suite start. It imports only the standard library
// (e2e/harness, which deploy/e2e uses, imports it).
package proc

import (
	"os"
	"syscall"
	"time"
)

// Terminate stops p unless it has exited already (done is closed when its
// Wait returns): SIGTERM, then SIGKILL if it is still running after
// grace. It returns once done is closed, reporting whether SIGKILL was
// needed.
func Terminate(p *os.Process, done <-chan struct{}, grace time.Duration) (killed bool) {
	select {
	case <-done:
		return false
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		_ = p.Kill()
		<-done
		return true
	}
}
