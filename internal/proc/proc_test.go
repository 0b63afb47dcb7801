package proc

import (
	"os/exec"
	"testing"
	"time"
)

// start runs sh -c script and returns it with a channel closed when its
// Wait returns.
func start(t *testing.T, script string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The script says "ready" once its trap is set.
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready" {
		t.Fatalf("child: %q %v", buf, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	return cmd, done
}

// TestTerminate: a process that exits on SIGTERM is not killed; one that
// ignores SIGTERM is killed after the grace period; one that has exited
// already is left alone.
func TestTerminate(t *testing.T) {
	cmd, done := start(t, "echo ready; exec sleep 30")
	if Terminate(cmd.Process, done, 10*time.Second) {
		t.Fatal("a process that exits on SIGTERM was killed")
	}
	if Terminate(cmd.Process, done, 10*time.Second) {
		t.Fatal("an exited process was killed")
	}
	cmd, done = start(t, `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	t0 := time.Now()
	if !Terminate(cmd.Process, done, 200*time.Millisecond) {
		t.Fatal("a process ignoring SIGTERM was not killed")
	}
	if el := time.Since(t0); el < 200*time.Millisecond {
		t.Fatalf("killed after %v, before the grace period", el)
	}
}
