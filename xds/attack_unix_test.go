package xds

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestAttackUnixSocketNeverWiderThanMode: the ADS socket must never be
// reachable at its path with a mode wider than xds.socket_mode, not even
// between bind and chmod (a local user connecting in that window keeps a
// plaintext, trusted connection: every declared node's secrets). With a
// permissive umask the socket was created 0777 and narrowed after. A
// poller watches the path while the socket is created again and again.
func TestAttackUnixSocketNeverWiderThanMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "xds.sock")
	var wide atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st, err := os.Lstat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
				wide.Add(1)
			}
		}
	}()
	for range 300 {
		ln, err := listenUnix(path, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Lstat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("socket mode %v %v", st.Mode(), err)
		}
		ln.Close()
	}
	close(stop)
	<-done
	if n := wide.Load(); n > 0 {
		t.Fatalf("the socket was seen %d times with a mode wider than 0600", n)
	}
}
