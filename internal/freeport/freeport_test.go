package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPickOutsideEphemeralAndUnique(t *testing.T) {
	lo, hi := ephemeralRange()
	seen := map[int]bool{}
	for i := 0; i < 200; i++ {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
		if lo-1 >= lowest && p >= lo && p <= hi {
			t.Fatalf("port %d inside the ephemeral range %d-%d", p, lo, hi)
		}
		if p < lowest {
			t.Fatalf("port %d below %d", p, lowest)
		}
	}
}

// A port bound with port 0 (what every MeshGate listener in the tests
// does) is never one Pick returns, while its listener is open or after.
func TestPickAvoidsKernelPorts(t *testing.T) {
	kernel := map[int]bool{}
	for i := 0; i < 200; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		kernel[ln.Addr().(*net.TCPAddr).Port] = true
		ln.Close()
	}
	lo, _ := ephemeralRange()
	if lo-1 < lowest {
		t.Skipf("ephemeral range starts at %d: no room below it", lo)
	}
	for i := 0; i < 200; i++ {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if kernel[p] {
			t.Fatalf("Pick returned %d, a port bind(0) handed out", p)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("picked port %d not bindable: %v", p, err)
		}
		ln.Close()
	}
}
