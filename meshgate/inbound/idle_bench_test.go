//go:build linux

package inbound

import (
	"io"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/testkit"
)

// sysConn is a client connection made with plain blocking syscalls: it
// costs the test process no Go heap, goroutine or netpoller entry, so a
// heap measurement of the process sees only the server's side.
type sysConn int

func dialRaw(tb testing.TB, addr string) sysConn {
	tb.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := syscall.Connect(fd, sa); err != nil {
		_ = syscall.Close(fd)
		tb.Fatal(err)
	}
	tv := syscall.NsecToTimeval(int64(5 * time.Second))
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	return sysConn(fd)
}

// Write and Read retry EINTR (the runtime's preemption signals interrupt
// blocking syscalls).
func (r sysConn) Write(p []byte) (int, error) {
	for {
		n, err := syscall.Write(int(r), p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func (r sysConn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(r), p)
		if err == syscall.EINTR {
			continue
		}
		if n == 0 && err == nil {
			return 0, io.EOF
		}
		return max(n, 0), err
	}
}
func (r sysConn) Close() error { return syscall.Close(int(r)) }

// BenchmarkIdleConnBytes reports the memory one idle MGP connection costs
// the server: N connections each send one echo request and read its reply
// (a connection that has served a request is the realistic idle state),
// then stay open; after a GC the growth of heap in use plus goroutine
// stacks, divided by N, is reported as idle-B/conn (not asserted).
// parked: measured once every connection is parked (IdleGrace passed, no
// goroutine); waiting: parking off (IdleGrace < 0), measured after the
// same settling pause, each connection waiting on its small goroutine.
func BenchmarkIdleConnBytes(b *testing.B) {
	b.Run("parked", func(b *testing.B) { benchIdleConnBytes(b, 0) })
	b.Run("waiting", func(b *testing.B) { benchIdleConnBytes(b, -1) })
}

func benchIdleConnBytes(b *testing.B, grace time.Duration) {
	const n = 500
	e := newEnvO(b, envOpts{grace: grace})
	wire, _ := e.codec.Append(nil, &codec.Frame{Cmd: cmdEcho, Seq: 1, UIN: 42, Body: []byte("warm")})
	roundTrip := func(c sysConn) {
		if _, err := c.Write(wire); err != nil {
			b.Fatal(err)
		}
		rd := codec.NewReader(c, e.codec, 256)
		var f codec.Frame
		if err := rd.ReadFrame(&f); err != nil || f.Result != 0 {
			b.Fatalf("reply %v %+v", err, f)
		}
	}
	// Warm the process (pools, workers, grpc-go's upstream path) first.
	w := dialRaw(b, e.addr)
	roundTrip(w)
	defer w.Close()
	var m testkit.PerConn
	var gs float64
	for i := 0; i < b.N; i++ {
		m.Start()
		g0 := runtime.NumGoroutine()
		conns := make([]sysConn, 0, n)
		for range n {
			c := dialRaw(b, e.addr)
			conns = append(conns, c)
			roundTrip(c)
		}
		// Settle: past the linger and the grace (and, parking, until
		// every connection is parked).
		time.Sleep(defaultIdleGrace + idleLinger + 50*time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for grace >= 0 && e.srv.park.Len() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		m.Stop(n)
		gs += float64(runtime.NumGoroutine()-g0) / n
		for _, c := range conns {
			_ = c.Close()
		}
		deadline = time.Now().Add(5 * time.Second)
		for e.srv.Conns() > 1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	m.Report(b)
	b.ReportMetric(gs/float64(b.N), "goroutines/conn")
}
