package legacy_test

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCommands(t *testing.T) {
	s, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{EchoExt: true})
	ctx := testkit.Context(t, 5*time.Second)
	cl := testkit.LegacyClient(t, s.Addr().String(), legacy.ClientOptions{Conns: 2})
	exts := []codec.Ext{{Key: codec.ExtCaller, Value: []byte("me")}, {Key: 0x9000, Value: []byte("app")}}
	r, err := cl.Call(ctx, legacy.CmdEcho, 77, []byte("body"), exts)
	if err != nil || string(r.Body) != "body" || r.UIN != 77 || r.Result != 0 {
		t.Fatalf("echo %+v %v", r, err)
	}
	if v, _ := r.ExtValue(0x9000); string(v) != "app" {
		t.Fatalf("ext not echoed: %+v", r.Ext)
	}
	if r, err = cl.Call(ctx, legacy.CmdUppercase, 0, []byte("abC1"), nil); err != nil || string(r.Body) != "ABC1" {
		t.Fatalf("upper %+v %v", r, err)
	}
	fail := binary.BigEndian.AppendUint16(nil, 321)
	fail = append(fail, "boom"...)
	if r, err = cl.Call(ctx, legacy.CmdFail, 0, fail, nil); err != nil || r.Result != 321 {
		t.Fatalf("fail %+v %v", r, err)
	}
	if v, _ := r.ExtValue(codec.ExtErrorMsg); string(v) != "boom" {
		t.Fatalf("fail msg %q", v)
	}
	t0 := time.Now()
	if r, err = cl.Call(ctx, legacy.CmdSlow, 0, []byte{0, 0, 0, 50}, nil); err != nil || r.Result != 0 || time.Since(t0) < 50*time.Millisecond {
		t.Fatalf("slow %+v %v after %v", r, err, time.Since(t0))
	}
	if r, err = cl.Call(ctx, 999, 0, nil, nil); err != nil || r.Result != codec.ResultUnknownCommand {
		t.Fatalf("unknown %+v %v", r, err)
	}
	if err := cl.Send(ctx, legacy.CmdEcho, 0, []byte("oneway"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Call(ctx, legacy.CmdEcho, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The oneway went on the other connection: wait for it.
	testkit.Await(2*time.Second, func() bool { return s.Stats().Oneway != 0 && s.Stats().Replies >= 6 })
	st := s.Stats()
	if st.Oneway != 1 || st.UnknownCmd != 1 || st.Requests != 7 || st.Replies != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMalformedClosesOnlyThatConn(t *testing.T) {
	s, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	ctx := testkit.Context(t, 5*time.Second)
	good := testkit.LegacyClient(t, s.Addr().String(), legacy.ClientOptions{})
	for _, bad := range [][]byte{
		{0x05, 1, 0, 32, 0, 0, 0, 0},                   // bad stx
		{0x02, 1, 0, 31, 0, 0, 0, 0},                   // header_len
		{0x02, 1, 0, 32, 0xff, 0xff, 0xff, 0xff, 0, 0}, // too large
	} {
		nc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(bad)
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := nc.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("conn not closed: %d %v", n, err)
		}
		nc.Close()
	}
	if r, err := good.Call(ctx, legacy.CmdEcho, 0, []byte("still"), nil); err != nil || string(r.Body) != "still" {
		t.Fatalf("other conn affected: %v", err)
	}
	if st := s.Stats(); st.Malformed != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHeartbeatAnsweredAndErrorInjection(t *testing.T) {
	s, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{ErrorRate: 1})
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := mgp.New(0)
	b, _ := c.Append(nil, &codec.Frame{Seq: 42, Flags: codec.FlagHeartbeat})
	b, _ = c.Append(b, &codec.Frame{Seq: 43, Cmd: legacy.CmdEcho, Body: []byte("x")})
	nc.Write(b)
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	r := codec.NewReader(nc, c, 1024)
	var f codec.Frame
	if err := r.ReadFrame(&f); err != nil || f.Seq != 42 || !f.Flags.Has(codec.FlagHeartbeat|codec.FlagResponse) {
		t.Fatalf("heartbeat reply %+v %v", f, err)
	}
	if err := r.ReadFrame(&f); err != nil || f.Seq != 43 || f.Result != codec.ResultInternal {
		t.Fatalf("injected reply %+v %v", f, err)
	}
	if st := s.Stats(); st.Heartbeats != 1 || st.Injected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestShutdownLetsInFlightFinish(t *testing.T) {
	s := legacy.NewServer(legacy.ServerOptions{})
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 5*time.Second)
	cl := testkit.LegacyClient(t, s.Addr().String(), legacy.ClientOptions{})
	done := make(chan error, 1)
	go func() {
		r, err := cl.Call(ctx, legacy.CmdSlow, 0, []byte{0, 0, 0, 100}, nil)
		if err == nil && r.Result != 0 {
			err = errors.New("bad result")
		}
		done <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	if _, err := net.Dial("tcp", s.Addr().String()); err == nil {
		t.Fatal("still accepting")
	}
}

func TestRunLoadDetectsNothingWrong(t *testing.T) {
	s, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{Jitter: time.Millisecond})
	r, err := legacy.RunLoad(testkit.Context(t, 5*time.Second), legacy.LoadOptions{Addr: s.Addr().String(), Conns: 2, Concurrency: 16, Requests: 2000, Size: 40})
	if err != nil || r.Count != 2000 || r.Errors != 0 || r.P99Us == 0 {
		t.Fatalf("%v %v", r, err)
	}
}
