package connio

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a real TCP connection on 127.0.0.1: the server side's
// socket and the client side.
func tcpPair(t *testing.T) (*net.TCPConn, syscall.RawConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tc := sc.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close(); _ = sc.Close() })
	return tc, rc, cl
}

// woken counts the wakes of one Parked.
func woken(t *testing.T, rc syscall.RawConn) (*Parked, chan struct{}) {
	ch := make(chan struct{}, 4)
	pc := &Parked{}
	pc.Init(rc, func() { ch <- struct{}{} })
	return pc, ch
}

func wantWake(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no wake: %s", what)
	}
}

// TestParkerWakes: a parked socket is woken exactly once by bytes, by the
// client's close and by Unpark (a second Unpark finds nothing); Close
// wakes what is still parked and Park refuses after it.
func TestParkerWakes(t *testing.T) {
	var p Parker
	_, rc, cl := tcpPair(t)
	pc, ch := woken(t, rc)
	if !p.Park(pc) || !p.Holds(pc) {
		t.Fatal("Park refused")
	}
	_, _ = cl.Write([]byte("x"))
	wantWake(t, ch, "bytes")
	if p.Holds(pc) || p.Unpark(pc) {
		t.Fatal("still parked after its wake")
	}
	// Level-triggered: the unread byte wakes it again at once.
	if !p.Park(pc) {
		t.Fatal("Park refused")
	}
	wantWake(t, ch, "unread byte")

	_, rc2, cl2 := tcpPair(t)
	pc2, ch2 := woken(t, rc2)
	if !p.Park(pc2) {
		t.Fatal("Park refused")
	}
	_ = cl2.Close()
	wantWake(t, ch2, "client close")

	_, rc3, _ := tcpPair(t)
	pc3, ch3 := woken(t, rc3)
	if !p.Park(pc3) || !p.Unpark(pc3) {
		t.Fatal("Park/Unpark")
	}
	wantWake(t, ch3, "Unpark")
	if p.Unpark(pc3) {
		t.Fatal("second Unpark found it")
	}

	_, rc4, _ := tcpPair(t)
	pc4, ch4 := woken(t, rc4)
	if !p.Park(pc4) {
		t.Fatal("Park refused")
	}
	p.Close()
	wantWake(t, ch4, "Close")
	if p.Park(pc4) || p.Len() != 0 {
		t.Fatal("Park after Close")
	}
	if len(ch) != 0 || len(ch2) != 0 || len(ch3) != 0 || len(ch4) != 0 {
		t.Fatal("a second wake")
	}
}

// TestParkerClosedWhileParked: a socket closed while parked (its epoll
// registration ends with it) is woken by Unpark without touching the
// descriptor; one whose descriptor number is parked again by another
// socket is woken then.
func TestParkerClosedWhileParked(t *testing.T) {
	var p Parker
	defer p.Close()
	sc, rc, _ := tcpPair(t)
	pc, ch := woken(t, rc)
	if !p.Park(pc) {
		t.Fatal("Park refused")
	}
	_ = sc.Close()
	if !p.Unpark(pc) {
		t.Fatal("Unpark of a closed socket found nothing")
	}
	wantWake(t, ch, "Unpark after close")

	sc, rc, _ = tcpPair(t)
	pc, ch = woken(t, rc)
	if !p.Park(pc) {
		t.Fatal("Park refused")
	}
	fd := pc.fd
	// The listener and the client's socket first, then the close: the
	// accepted socket gets the lowest free descriptor, the one just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	_ = sc.Close()
	sc2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc2.Close()
	rc2, err := sc2.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	pc2, ch2 := woken(t, rc2)
	if !p.Park(pc2) {
		t.Fatal("Park refused")
	}
	if pc2.fd != fd {
		t.Skipf("descriptor %d not reused (got %d)", fd, pc2.fd)
	}
	wantWake(t, ch, "descriptor reused")
	if !p.Holds(pc2) {
		t.Fatal("the new socket is not parked")
	}
	_, _ = cl2.Write([]byte("x"))
	wantWake(t, ch2, "bytes on the new socket")
}
