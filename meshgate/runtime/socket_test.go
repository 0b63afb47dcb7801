package runtime

import (
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/meshgate/rawio"
)

// TestSocketAcceptsRawConns: every listener's socket hands out rawio
// connections (reads and writes off the runtime's blocking-syscall path;
// docs/performance.md), so a refactor cannot drop them unnoticed.
func TestSocketAcceptsRawConns(t *testing.T) {
	s, err := bindSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v := s.view()
	defer v.Close()
	c, err := net.DialTimeout("tcp", v.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := v.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if _, ok := got.(*rawio.Conn); !ok {
		t.Fatalf("accepted %T, want *rawio.Conn", got)
	}
}
