package rawio

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a wrapped client connection and the accepted server side
// (also wrapped, through Listener).
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := Listener{Listener: ln}.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, ok := raw.(*Conn)
	if !ok {
		t.Fatalf("Dial = %T, want *Conn", raw)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	if _, ok := s.(*Conn); !ok {
		t.Fatalf("Listener.Accept = %T, want *Conn", s)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// A write far larger than the socket buffers completes (partial writes,
// waits for writability) and the reader gets every byte in order.
func TestLargeWriteAndRead(t *testing.T) {
	c, s := pair(t)
	want := make([]byte, 8<<20)
	_, _ = rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		n, err := c.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 3000)
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < len(want) {
		n, err := s.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
}

// Reads end as a *net.TCPConn's do: io.EOF when the peer closes, a
// timeout on a read deadline, net.ErrClosed after Close.
func TestReadErrors(t *testing.T) {
	c, s := pair(t)
	buf := make([]byte, 16)

	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	if _, err := s.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("read = %q, %v", buf[:n], err)
	}
	_ = s.Close()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read after peer close: %v, want io.EOF", err)
	}

	c2, _ := pair(t)
	done := make(chan error, 1)
	go func() { _, err := c2.Read(buf); done <- err }()
	// The read above may not have parked yet; Close unblocks it either way.
	_ = c2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on closed conn: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := c2.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on closed conn: %v, want net.ErrClosed", err)
	}
}

// A write to a peer that does not read ends at the write deadline, with
// what was written counted.
func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t)
	big := make([]byte, 64<<20) // before the deadline: zeroing it may take longer than 50 ms under -race
	_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a stalled peer: %v, want deadline exceeded", err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("written %d bytes, want a partial write", n)
	}
}

func TestWrapOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap of a non-TCP conn must return it unchanged")
	}
	if _, ok := TCP(a); ok {
		t.Fatal("TCP of a pipe")
	}
	c, _ := pair(t)
	if tc, ok := TCP(c); !ok || tc != c.TCPConn {
		t.Fatal("TCP of a *Conn must return its *net.TCPConn")
	}
}

// Dial reports a refused connection as the dialer's error, with no conn.
func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr)
	var op *net.OpError
	if c != nil || !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("Dial(closed port) = %v, %v; want nil and a dial *net.OpError", c, err)
	}
}

func TestNoAllocs(t *testing.T) {
	c, s := pair(t)
	msg := make([]byte, 1024)
	buf := make([]byte, 1024)
	if a := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%v allocations per write and read, want 0", a)
	}
	runtime.KeepAlive(c)
}
