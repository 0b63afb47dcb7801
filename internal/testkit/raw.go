package testkit

import (
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// Flood writes wire (n MGP/1 frames, each with a distinct seq) on a fresh
// connection to addr and reads the n replies, returning how many came
// back with each result. The write runs beside the reads so neither side
// blocks the other; the connection has 60s in all.
func Flood(tb testing.TB, addr string, wire []byte, n int) map[uint16]int {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := nc.Write(wire)
		werr <- err
	}()
	rd := codec.NewReader(nc, mgp.New(0), 64<<10)
	got := map[uint16]int{}
	var f codec.Frame
	for i := 0; i < n; i++ {
		if err := rd.ReadFrame(&f); err != nil {
			tb.Fatalf("after %d of %d replies: %v", i, n, err)
		}
		got[f.Result]++
	}
	if err := <-werr; err != nil {
		tb.Fatal(err)
	}
	return got
}

// SendOnce writes one MGP/1 frame (wire) on a fresh connection to addr and
// returns its reply's result.
func SendOnce(tb testing.TB, addr string, wire []byte) uint16 {
	tb.Helper()
	for r := range Flood(tb, addr, wire, 1) {
		return r
	}
	return 0
}
