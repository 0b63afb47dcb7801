package inbound

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/push"
)

// nextPush returns the next PUSH frame the client received.
func nextPush(t *testing.T, cl *client) codec.Frame {
	t.Helper()
	for {
		if f := cl.next("the push"); f.Flags&codec.FlagPush != 0 {
			return f
		}
	}
}

func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// TestPushToLearnedUIN: a connection that sent a request for uin 42 gets
// the pushes for uin 42 (a PUSH frame with cmd, uin, body and extensions);
// after it closes, a push for 42 is ErrNotConnected. Before push support
// a listener knew no uin of its connections.
func TestPushToLearnedUIN(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.srv.SetPush(&config.ListenerPush{})
	cl := e.dial()
	if r, ok := cl.call(codec.Frame{Cmd: cmdEcho, UIN: 42, Body: []byte("hi")}); !ok || r.Result != 0 {
		t.Fatalf("echo: %+v", r)
	}
	reg := e.srv.Registry()
	n, err := reg.Deliver(42, &codec.Frame{Cmd: 900, UIN: 42, Seq: 1, Flags: codec.FlagPush, Body: []byte("event"), Ext: []codec.Ext{{Key: 0x8001, Value: []byte("v")}}})
	if n != 1 || err != nil {
		t.Fatalf("deliver: %d %v", n, err)
	}
	p := nextPush(t, cl)
	if p.Cmd != 900 || p.UIN != 42 || string(p.Body) != "event" || len(p.Ext) != 1 || string(p.Ext[0].Value) != "v" {
		t.Fatalf("push %+v", p)
	}
	if _, err := reg.Deliver(43, &codec.Frame{Cmd: 900, Flags: codec.FlagPush}); !errors.Is(err, push.ErrNotConnected) {
		t.Fatalf("other uin: %v", err)
	}
	_ = cl.nc.Close()
	pollUntil(t, "the binding to die with the connection", func() bool { return reg.Bindings() == 0 })
	if _, err := reg.Deliver(42, &codec.Frame{Cmd: 900, Flags: codec.FlagPush}); !errors.Is(err, push.ErrNotConnected) {
		t.Fatalf("after close: %v", err)
	}
}

// TestPushLoginCmdBindsOnSuccessOnly: with login_cmd, requests do not bind
// their uin; a failed login does not either; a successful one does.
func TestPushLoginCmdBindsOnSuccessOnly(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.srv.SetPush(&config.ListenerPush{LoginCmd: cmdFail})
	failing := e.dial()
	if r, _ := failing.call(codec.Frame{Cmd: cmdFail, UIN: 7}); r.Result == 0 {
		t.Fatal("cmdFail succeeded")
	}
	failing.call(codec.Frame{Cmd: cmdEcho, UIN: 7})
	if e.srv.Registry().Bindings() != 0 {
		t.Fatal("a failed login or a plain request bound the uin")
	}
	e.srv.SetPush(&config.ListenerPush{LoginCmd: cmdEcho})
	cl := e.dial()
	cl.call(codec.Frame{Cmd: cmdUpper, UIN: 8, Body: []byte("x")})
	if e.srv.Registry().Bindings() != 0 {
		t.Fatal("a non-login request bound the uin")
	}
	cl.call(codec.Frame{Cmd: cmdEcho, UIN: 8})
	if n, err := e.srv.Registry().Deliver(8, &codec.Frame{Cmd: 1, UIN: 8, Flags: codec.FlagPush}); n != 1 || err != nil {
		t.Fatalf("after login: %d %v", n, err)
	}
	nextPush(t, cl)
}

// TestPushBackpressureBounded: a client that stops reading fills the
// socket; pushes to it are then refused with ErrFull at queue_bytes instead
// of blocking the pusher or growing memory.
func TestPushBackpressureBounded(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.srv.SetPush(&config.ListenerPush{QueueBytes: 64 << 10})
	nc, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	b, _ := e.codec.Append(nil, &codec.Frame{Cmd: cmdEcho, Seq: 1, UIN: 5, Flags: codec.FlagOneway})
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	reg := e.srv.Registry()
	pollUntil(t, "the uin to bind", func() bool { return reg.Bindings() == 1 })
	body := make([]byte, 32<<10)
	start := time.Now()
	var full bool
	for i := 0; i < 4000 && !full; i++ {
		_, err := reg.Deliver(5, &codec.Frame{Cmd: 2, UIN: 5, Flags: codec.FlagPush, Body: body})
		switch {
		case errors.Is(err, push.ErrFull):
			full = true
		case err != nil:
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if !full {
		t.Fatal("a client that does not read never pushed back")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("pushing took %v: the pusher waited for the socket", d)
	}
}
