//go:build linux

package rawio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Awkward moments for a Conn, each on real TCP sockets on 127.0.0.1.

// within runs f and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
}

// A peer that resets the connection while a large write is under way:
// the write ends with ECONNRESET or EPIPE (no hang, no SIGPIPE killing
// the process), and so do the writes after it.
func TestPeerResetMidWrite(t *testing.T) {
	c, s := pair(t)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 64<<20)) // blocks: the peer reads a little, then resets
		errc <- err
	}()
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	tc, _ := TCP(s)
	_ = tc.SetLinger(0) // close sends RST
	_ = s.Close()
	var err error
	within(t, 3*time.Second, "write to a reset peer", func() { err = <-errc })
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a reset peer: %v, want ECONNRESET or EPIPE", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("error %T %v, want a *net.OpError of op write", err, err)
	}
	for range 3 {
		if _, err := c.Write([]byte("more")); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("write after the reset: %v", err)
		}
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("read after the reset succeeded")
	}
}

// A zero-length read returns at once (0, nil) on an open connection, as
// *net.TCPConn's does, even with nothing to read; on a closed one it
// returns net.ErrClosed as *net.TCPConn's does.
func TestZeroLengthRead(t *testing.T) {
	c, _ := pair(t)
	within(t, time.Second, "zero-length read", func() {
		if n, err := c.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) = %d, %v", n, err)
		}
	})
	_ = c.Close()
	if _, err := c.Read(nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read(nil) after Close: %v, want net.ErrClosed", err)
	}
	tc, _ := TCP(c)
	if _, err := tc.Read(nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("(*net.TCPConn).Read(nil) after Close: %v (the behaviour matched)", err)
	}
}

// SetWriteDeadline in the past while a write is blocked (peer not
// reading) ends the write promptly with os.ErrDeadlineExceeded.
func TestDeadlineInPastDuringBlockedWrite(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := c.Write(make([]byte, 64<<20))
		errc <- err
	}()
	<-started
	// Wait until the write really blocks: the socket's send queue is full.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if n := sendQueued(t, c); n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling the socket's state
	}
	_ = c.SetWriteDeadline(time.Unix(1, 0))
	var err error
	within(t, 2*time.Second, "blocked write after a past deadline", func() { err = <-errc })
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked write: %v, want os.ErrDeadlineExceeded", err)
	}
}

// sendQueued is the number of bytes in c's socket send queue (SIOCOUTQ).
func sendQueued(t *testing.T, c *Conn) int {
	rc, err := c.TCPConn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_ = rc.Control(func(fd uintptr) {
		var q int32
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&q)))
		if e == 0 {
			n = int(q)
		}
	})
	return n
}

// Close while a Read and a Write are blocked: both return net.ErrClosed
// promptly.
func TestCloseUnblocksReadAndWrite(t *testing.T) {
	c, _ := pair(t)
	rerr := make(chan error, 1)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		rerr <- err
	}()
	go func() {
		_, err := c.Write(make([]byte, 64<<20))
		werr <- err
	}()
	deadline := time.Now().Add(3 * time.Second)
	for sendQueued(t, c) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling the socket's state
	}
	_ = c.Close()
	var re, we error
	within(t, 2*time.Second, "blocked read after Close", func() { re = <-rerr })
	within(t, 2*time.Second, "blocked write after Close", func() { we = <-werr })
	if !errors.Is(re, net.ErrClosed) || !errors.Is(we, net.ErrClosed) {
		t.Fatalf("after Close: read %v, write %v; want net.ErrClosed", re, we)
	}
}

// Concurrent writers each writing whole records larger than the socket
// buffers: the reader sees every record whole (no interleaving inside a
// Write), all of them.
func TestConcurrentWritersWholeBuffers(t *testing.T) {
	c, s := pair(t)
	const writers, records, size = 4, 8, 256 << 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := bytes.Repeat([]byte{byte('a' + w)}, size)
			for i := range records {
				binary.BigEndian.PutUint32(rec, uint32(w<<16|i))
				if _, err := c.Write(rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	seen := map[uint32]bool{}
	buf := make([]byte, size)
	for range writers * records {
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatal(err)
		}
		id := binary.BigEndian.Uint32(buf)
		w := byte('a' + id>>16)
		for i, b := range buf[4:] {
			if b != w {
				t.Fatalf("record %x interleaved at byte %d: %q", id, i+4, b)
			}
		}
		seen[id] = true
	}
	wg.Wait()
	if len(seen) != writers*records {
		t.Fatalf("%d distinct records, want %d", len(seen), writers*records)
	}
}
