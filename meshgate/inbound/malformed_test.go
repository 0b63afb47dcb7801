package inbound

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// hdr builds an MGP/1 header from annotated hex; the tests patch fields.
func hdr(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validFrame(t *testing.T) []byte {
	return hdr(t,
		"02",               // stx
		"01",               // version
		"0020",             // header_len 32
		"00000002",         // body_len 2
		"00000064",         // cmd 100 (echo)
		"00000001",         // seq 1
		"0000000000000000", // uin
		"0000",             // flags
		"0000",             // result
		"00000000",         // reserved
		"6869",             // body "hi"
		"03",               // etx
	)
}

func TestMalformedClosesOnlyItsConnection(t *testing.T) {
	e := newEnv(t, envOpts{maxFrame: 1 << 16})
	good := e.dial()
	patch := func(off int, b ...byte) []byte {
		f := validFrame(t)
		copy(f[off:], b)
		return f
	}
	u32 := func(v uint32) []byte { var b [4]byte; binary.BigEndian.PutUint32(b[:], v); return b[:] }
	cases := []struct {
		name   string
		input  []byte
		reason string
	}{
		{"bad stx", patch(0, 0x7f), "stx"},
		{"bad version", patch(1, 9), "version"},
		{"header_len 0", patch(2, 0, 0), "header_len"},
		{"header_len < 32", patch(2, 0, 28), "header_len"},
		{"header_len not multiple of 4", patch(2, 0, 34), "header_len"},
		{"body_len 0x7fffffff", patch(4, u32(0x7fffffff)...), "frame_too_large"},
		{"body_len 0xffffffff", patch(4, u32(0xffffffff)...), "frame_too_large"},
		{"max+1", patch(4, u32(1<<16-32)...), "frame_too_large"},
		{"bad etx", patch(34, 0x00), "etx"},
		{"TLV longer than header", append(hdr(t, "02", "01", "0028", "00000000", "00000064", "00000002", "0000000000000000", "0000", "0000", "00000000",
			"8001", "0010", // key 0x8001, len 16 > the 4 bytes left
			"00000000"), 0x03), "extensions"},
		{"header+body overflow uint32", patch(2, append([]byte{0x10, 0x00}, u32(0xfffffff0)...)...), "frame_too_large"},
		{"close mid-body", validFrame(t)[:30], "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.metrics.Malformed.WithLabelValues("priv", tc.reason))
			cl := e.dial()
			// A request in flight before the bad frame still gets its reply.
			inflight := cl.start(codecFrame(cmdSleep, 900, "50ms"))
			time.Sleep(10 * time.Millisecond)
			cl.write(tc.input)
			if tc.reason == "truncated" {
				_ = cl.nc.(*net.TCPConn).CloseWrite()
			}
			r, ok := wait(t, inflight)
			if !ok || r.Seq != 900 || r.Result != 0 {
				t.Fatalf("in-flight reply lost: %+v ok=%v", r, ok)
			}
			if err := cl.waitClosed(); !isEOF(err) {
				t.Fatalf("client saw %v, want EOF", err)
			}
			after := testutil.ToFloat64(e.metrics.Malformed.WithLabelValues("priv", tc.reason))
			if after != before+1 {
				t.Fatalf("malformed{reason=%s} %v → %v", tc.reason, before, after)
			}
			// The other connection is unaffected.
			if r, ok := good.call(codecFrame(cmdEcho, 0, "still")); !ok || string(r.Body) != "still" {
				t.Fatalf("good connection broken: %+v", r)
			}
		})
	}
}

func codecFrame(cmd, seq uint32, body string) codec.Frame {
	return codec.Frame{Cmd: cmd, Seq: seq, Body: []byte(body)}
}

func TestFrameSizeLimitAndSplitWrites(t *testing.T) {
	const max = 1 << 16
	e := newEnv(t, envOpts{maxFrame: max})
	cl := e.dial()
	// Exactly max is accepted.
	body := make([]byte, max-mgp.HeaderSize-1)
	r, ok := cl.call(codec.Frame{Cmd: cmdEcho, Body: body})
	if !ok || r.Result != 0 || len(r.Body) != len(body) {
		t.Fatalf("max-size frame: result %d len %d", r.Result, len(r.Body))
	}
	// One byte per write.
	f := codec.Frame{Cmd: cmdEcho, Seq: 4242, Body: []byte("slow but fine")}
	b, _ := e.codec.Append(nil, &f)
	ch := cl.expect(4242)
	for i := range b {
		cl.write(b[i : i+1])
	}
	if r, _ := wait(t, ch); string(r.Body) != "slow but fine" {
		t.Fatalf("byte-wise frame: %+v", r)
	}
	// 100 frames in one write.
	var all []byte
	for i := 0; i < 100; i++ {
		f := codec.Frame{Cmd: cmdEcho, Seq: uint32(10000 + i), Body: []byte("b")}
		all, _ = e.codec.Append(all, &f)
	}
	chs := make([]chan codec.Frame, 100)
	for i := range chs {
		chs[i] = cl.expect(uint32(10000 + i))
	}
	cl.write(all)
	for i, ch := range chs {
		if r, ok := wait(t, ch); !ok || r.Seq != uint32(10000+i) {
			t.Fatalf("batch reply %d: %+v", i, r)
		}
	}
}

func TestSlowlorisAndIdle(t *testing.T) {
	e := newEnv(t, envOpts{lim: Limits{ReadTimeout: 150 * time.Millisecond, IdleTimeout: 400 * time.Millisecond}})
	// Slowloris: a frame started but never finished.
	cl := e.dial()
	cl.write(validFrame(t)[:10])
	start := time.Now()
	if err := cl.waitClosed(); !isEOF(err) {
		t.Fatalf("slowloris: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("slowloris closed after %v", d)
	}
	if n := testutil.ToFloat64(e.metrics.Malformed.WithLabelValues("priv", "read_timeout")); n != 1 {
		t.Fatalf("read_timeout counter %v", n)
	}
	// Idle: a connection that sends nothing is closed after IdleTimeout, one
	// that keeps talking is not.
	idle := e.dial()
	busy := e.dial()
	for i := 0; i < 8; i++ {
		if r, ok := busy.call(codecFrame(cmdEcho, 0, "x")); !ok || r.Result != 0 {
			t.Fatalf("busy: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := idle.waitClosed(); !isEOF(err) {
		t.Fatalf("idle: %v", err)
	}
	if r, ok := busy.call(codecFrame(cmdEcho, 0, "x")); !ok || r.Result != 0 {
		t.Fatalf("busy after idle close: %+v", r)
	}
}

func TestHeartbeatFlood(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	var all []byte
	for i := 0; i < 5000; i++ {
		f := codec.Frame{Seq: uint32(i + 1), Flags: codec.FlagHeartbeat}
		all, _ = e.codec.Append(all, &f)
	}
	cl.write(all)
	n := 0
	for n < 5000 {
		if f := cl.next(fmt.Sprintf("heartbeat reply %d", n+1)); f.Flags != codec.FlagResponse|codec.FlagHeartbeat {
			t.Fatalf("reply %+v", f)
		}
		n++
	}
	if r, ok := cl.call(codecFrame(cmdEcho, 0, "x")); !ok || r.Result != 0 {
		t.Fatalf("after flood: %+v", r)
	}
}
