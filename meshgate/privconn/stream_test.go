package privconn_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/stream"
)

func dialRaw(t *testing.T, addr string) *privconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := privconn.Dial(ctx, addr, mgpc, privconn.Options{Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cn.Close() })
	return cn
}

func recvAll(t *testing.T, s *privconn.Stream) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []string
	for {
		b, err := s.Recv(ctx)
		if err != nil {
			return got, err
		}
		got = append(got, string(b))
	}
}

// TestStreamClientAndServerMessages: a bidi exchange: the request
// messages arrive as MORE frames then an empty last frame; the reply
// messages come back in order, then io.EOF on the final result 0.
func TestStreamClientAndServerMessages(t *testing.T) {
	reqs := make(chan codec.Frame, 8)
	addr := frameServer(t, func(nc net.Conn, f *codec.Frame) bool {
		reqs <- *privconn.Clone(f)
		if f.Flags&codec.FlagMore == 0 { // the last request frame: the final reply, then read until the client closes
			writeFrame(t, nc, &codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse})
			return true
		}
		writeFrame(t, nc, &codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse | codec.FlagMore, Body: append([]byte("re:"), f.Body...)})
		return true
	})
	cn := dialRaw(t, addr)
	s, err := cn.OpenStream(5, 9, []codec.Ext{{Key: 0x8001, Value: []byte("x")}}, stream.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b"} {
		if err := s.Send([]byte(m), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got, err := recvAll(t, s)
	if err != io.EOF || len(got) != 2 || got[0] != "re:a" || got[1] != "re:b" {
		t.Fatalf("got %q, %v", got, err)
	}
	if s.Send([]byte("late"), false) != privconn.ErrStreamDone {
		t.Fatal("send after the last frame")
	}
	for i, want := range []struct {
		fl   codec.Flags
		body string
		ext  int
	}{{codec.FlagMore, "a", 1}, {codec.FlagMore, "b", 0}, {0, "", 0}} {
		f := <-reqs
		if f.Flags != want.fl || string(f.Body) != want.body || len(f.Ext) != want.ext || f.Cmd != 5 || f.UIN != 9 || f.Seq != s.Seq() {
			t.Fatalf("request frame %d: %+v", i, f)
		}
	}
	if cn.InFlight() != 0 {
		t.Fatalf("in flight %d after the end", cn.InFlight())
	}
}

// TestStreamOverflowCancelsOnlyThatExchange: the server floods one
// exchange whose consumer does not read; past its bound the exchange ends
// with result 6 and the server gets a CANCEL for it, while a unary request
// and another stream on the same connection are answered meanwhile.
func TestStreamOverflowCancelsOnlyThatExchange(t *testing.T) {
	cancels := make(chan uint32, 1)
	addr := frameServer(t, func(nc net.Conn, f *codec.Frame) bool {
		switch {
		case f.Flags&codec.FlagCancel != 0:
			cancels <- f.Seq
		case f.Cmd == 1: // the flood
			for range 20 {
				writeFrame(t, nc, &codec.Frame{Cmd: 1, Seq: f.Seq, Flags: codec.FlagResponse | codec.FlagMore, Body: []byte("flood")})
			}
		case f.Cmd == 2: // the well-behaved stream
			writeFrame(t, nc, &codec.Frame{Cmd: 2, Seq: f.Seq, Flags: codec.FlagResponse | codec.FlagMore, Body: []byte("one")})
			writeFrame(t, nc, &codec.Frame{Cmd: 2, Seq: f.Seq, Flags: codec.FlagResponse})
		default: // unary
			writeFrame(t, nc, &codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse, Body: []byte("u")})
		}
		return true
	})
	cn := dialRaw(t, addr)
	slow, _ := cn.OpenStream(1, 0, nil, stream.Limits{Messages: 4})
	if err := slow.Send(nil, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case seq := <-cancels:
		if seq != slow.Seq() {
			t.Fatalf("cancel for seq %d, want %d", seq, slow.Seq())
		}
	case <-ctx.Done():
		t.Fatal("no CANCEL sent for the overflowing exchange")
	}
	fast, _ := cn.OpenStream(2, 0, nil, stream.Limits{Messages: 4})
	fast.Send(nil, true)
	if got, err := recvAll(t, fast); err != io.EOF || len(got) != 1 {
		t.Fatalf("other stream: %q %v", got, err)
	}
	if resp, err := cn.Do(ctx, &codec.Frame{Cmd: 3}); err != nil || string(resp.Body) != "u" {
		t.Fatalf("unary on the same connection: %v", err)
	}
	got, err := recvAll(t, slow)
	var ee *stream.EndError
	if !errors.As(err, &ee) || ee.Result != codec.ResultOverloaded || len(got) != 4 {
		t.Fatalf("slow stream: %d messages, %v", len(got), err)
	}
}

// TestStreamCancelAndConnectionLoss: Cancel sends a CANCEL frame and Recv
// ends with result 11; a connection that closes ends open streams with
// result 7.
func TestStreamCancelAndConnectionLoss(t *testing.T) {
	cancels := make(chan codec.Frame, 1)
	addr := rawServer(t, func(nc net.Conn) {
		r := codec.NewReader(nc, mgpc, 1024)
		var f codec.Frame
		for r.ReadFrame(&f) == nil {
			if f.Flags&codec.FlagCancel != 0 {
				cancels <- *privconn.Clone(&f)
				return // and close the connection
			}
		}
	})
	cn := dialRaw(t, addr)
	a, _ := cn.OpenStream(7, 3, nil, stream.Limits{})
	b, _ := cn.OpenStream(7, 4, nil, stream.Limits{})
	a.Send([]byte("x"), false)
	b.Send([]byte("y"), false)
	a.Cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case f := <-cancels:
		if f.Seq != a.Seq() || f.Cmd != 7 || f.UIN != 3 {
			t.Fatalf("cancel frame %+v", f)
		}
	case <-ctx.Done():
		t.Fatal("no CANCEL frame")
	}
	var ee *stream.EndError
	if _, err := a.Recv(ctx); !errors.As(err, &ee) || ee.Result != codec.ResultCancelled {
		t.Fatalf("cancelled stream: %v", err)
	}
	if _, err := b.Recv(ctx); !errors.As(err, &ee) || ee.Result != codec.ResultUnavailable {
		t.Fatalf("stream on a closed connection: %v", err)
	}
	if cn.InFlight() != 0 {
		t.Fatalf("in flight %d", cn.InFlight())
	}
}
