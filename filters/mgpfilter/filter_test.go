package main

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// recorder stands in for the two host calls the proxytest emulator does
// not implement for network filters (buffer replacement and close).
type recorder struct {
	replaced []byte
	didSet   bool
	closes   int
}

func (r *recorder) Replace(_ bool, data []byte) error {
	r.replaced, r.didSet = append([]byte(nil), data...), true
	return nil
}

func (r *recorder) Close() error { r.closes++; return nil }

type harness struct {
	t     *testing.T
	reset func()
	host  proxytest.HostEmulator
	rec   map[uint32]*recorder
	last  *recorder
}

func newHarness(t *testing.T, cfg string) *harness {
	t.Helper()
	h := &harness{t: t, rec: map[uint32]*recorder{}}
	newOps = func() ops { h.last = &recorder{}; return h.last }
	t.Cleanup(func() { newOps = func() ops { return sdkOps{} } })
	opt := proxytest.NewEmulatorOption().WithVMContext(&vmContext{}).WithPluginConfiguration([]byte(cfg))
	host, reset := proxytest.NewHostEmulator(opt)
	h.host = host
	var once bool
	h.reset = func() {
		if !once {
			once = true
			reset()
		}
	}
	t.Cleanup(h.reset)
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("StartPlugin = %v, logs %v", st, host.GetCriticalLogs())
	}
	return h
}

func (h *harness) conn() uint32 {
	id, action := h.host.InitializeConnection()
	if action != types.ActionContinue {
		h.t.Fatalf("OnNewConnection = %v", action)
	}
	h.rec[id] = h.last
	return id
}

// send feeds a chunk in one direction and returns the bytes Envoy would
// forward: the replacement if the filter set one, else the chunk itself.
func (h *harness) send(id uint32, downstream bool, chunk []byte) []byte {
	r := h.rec[id]
	r.didSet, r.replaced = false, nil
	var a types.Action
	if downstream {
		a = h.host.CallOnDownstreamData(id, chunk)
	} else {
		a = h.host.CallOnUpstreamData(id, chunk)
	}
	if a != types.ActionContinue {
		h.t.Fatalf("action %v", a)
	}
	if r.didSet {
		return r.replaced
	}
	return chunk
}

func (h *harness) counter(name string) uint64 {
	h.t.Helper()
	v, err := h.host.GetCounterMetric(name)
	if err != nil {
		return 0
	}
	return v
}

var enc = mgp.New(0)

func frame(t testing.TB, f codec.Frame) []byte {
	t.Helper()
	b, err := enc.Append(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func req(cmd, seq uint32, body string) codec.Frame {
	return codec.Frame{Cmd: cmd, Seq: seq, UIN: 42, Body: []byte(body)}
}

func resp(cmd, seq uint32, result uint16) codec.Frame {
	return codec.Frame{Cmd: cmd, Seq: seq, UIN: 42, Flags: codec.FlagResponse, Result: result}
}

func decodeAll(t *testing.T, b []byte) []codec.Frame {
	t.Helper()
	var out []codec.Frame
	for len(b) > 0 {
		var f codec.Frame
		n, _, err := enc.Decode(b, &f)
		if err != nil || n == 0 {
			t.Fatalf("decode forwarded bytes: n=%d err=%v", n, err)
		}
		out = append(out, f)
		b = b[n:]
	}
	return out
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"max_frame_size": 10}`:                "max_frame_size",
		`{"on_malformed": "explode"}`:           "on_malformed",
		`{"allow_cmds": [1], "deny_cmds": [1]}`: "deny_cmds",
		`{"alow_cmds": [1]}`:                    "alow_cmds",
		`{"allow_cmds": "x"}`:                   "allow_cmds",
	} {
		_, err := ParseConfig([]byte(cfg))
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("%s: err = %v, want mention of %s", cfg, err, want)
		}
	}
	opt := proxytest.NewEmulatorOption().WithVMContext(&vmContext{}).WithPluginConfiguration([]byte(`{"on_malformed":"explode"}`))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
		t.Fatalf("bad config started: %v", st)
	}
	if logs := host.GetCriticalLogs(); len(logs) == 0 || !bytes.Contains([]byte(logs[0]), []byte("on_malformed")) {
		t.Fatalf("critical logs %v", logs)
	}
}

// TestSplitAtEveryByte feeds two pipelined requests and their responses
// split at every byte boundary: counters and forwarded bytes are the same
// at every split point, in observe mode and in policy mode.
func TestSplitAtEveryByte(t *testing.T) {
	reqs := append(frame(t, req(7, 1, "hello")), frame(t, codec.Frame{Cmd: 8, Seq: 2, Ext: []codec.Ext{{Key: 4, Value: []byte("svc")}}, Body: []byte("world!")})...)
	resps := append(frame(t, resp(8, 2, 0)), frame(t, resp(7, 1, 9))...)
	for _, cfg := range []string{``, `{"deny_cmds": [99]}`} {
		for split := 0; split <= len(reqs); split++ {
			h := newHarness(t, cfg)
			id := h.conn()
			var fwd []byte
			fwd = append(fwd, h.send(id, true, reqs[:split])...)
			fwd = append(fwd, h.send(id, true, reqs[split:])...)
			if !bytes.Equal(fwd, reqs) {
				t.Fatalf("cfg %q split %d: forwarded %x, want %x", cfg, split, fwd, reqs)
			}
			us := split % (len(resps) + 1)
			back := append(h.send(id, false, resps[:us]), h.send(id, false, resps[us:])...)
			if !bytes.Equal(back, resps) {
				t.Fatalf("cfg %q split %d: responses changed", cfg, split)
			}
			for name, want := range map[string]uint64{
				"mgp.cmd.7.requests":           1,
				"mgp.cmd.8.requests":           1,
				"mgp.cmd.8.responses.result.0": 1,
				"mgp.cmd.7.responses.result.9": 1,
				"mgp.responses.unmatched":      0,
				"mgp.malformed":                0,
			} {
				if got := h.counter(name); got != want {
					t.Fatalf("cfg %q split %d: %s = %d, want %d", cfg, split, name, got, want)
				}
			}
			h.reset()
		}
	}
}

func TestOneBytePerCallAndManyPerCall(t *testing.T) {
	h := newHarness(t, `{"allow_cmds": [1, 2]}`)
	id := h.conn()
	var all []byte
	for i := uint32(0); i < 100; i++ {
		all = append(all, frame(t, req(1+i%2, i, fmt.Sprint("body", i)))...)
	}
	var fwd []byte
	for i := range all {
		fwd = append(fwd, h.send(id, true, all[i:i+1])...)
	}
	if !bytes.Equal(fwd, all) {
		t.Fatal("one byte per call: forwarded bytes differ")
	}
	id2 := h.conn()
	if fwd := h.send(id2, true, all); !bytes.Equal(fwd, all) {
		t.Fatal("100 frames in one call: forwarded bytes differ")
	}
	if got := h.counter("mgp.cmd.1.requests") + h.counter("mgp.cmd.2.requests"); got != 200 {
		t.Fatalf("requests = %d, want 200", got)
	}
}

// TestDeniedCmd: a denied request is not forwarded; a heartbeat probe with
// its seq goes instead, and the upstream's heartbeat answer comes back as a
// result-4 response with the request's cmd, seq and uin.
func TestDeniedCmd(t *testing.T) {
	h := newHarness(t, `{"deny_cmds": [66]}`)
	id := h.conn()
	in := append(frame(t, req(1, 10, "ok")), frame(t, req(66, 11, "secret-body"))...)
	in = append(in, frame(t, req(1, 12, "ok2"))...)
	// Split inside the denied frame: nothing of it may leak in chunk one.
	cut := len(frame(t, req(1, 10, "ok"))) + 20
	fwd := append(h.send(id, true, in[:cut]), h.send(id, true, in[cut:])...)
	if bytes.Contains(fwd, []byte("secret-body")) {
		t.Fatal("denied body forwarded")
	}
	got := decodeAll(t, fwd)
	if len(got) != 3 || got[0].Seq != 10 || got[2].Seq != 12 {
		t.Fatalf("forwarded %+v", got)
	}
	if got[1].Seq != 11 || !got[1].Flags.Has(codec.FlagHeartbeat) || len(got[1].Body) != 0 {
		t.Fatalf("probe = %+v", got[1])
	}
	// Upstream answers the two real requests and the heartbeat probe.
	up := append(frame(t, resp(1, 10, 0)), frame(t, codec.Frame{Seq: 11, UIN: 42, Flags: codec.FlagResponse | codec.FlagHeartbeat})...)
	up = append(up, frame(t, resp(1, 12, 0))...)
	back := decodeAll(t, h.send(id, false, up))
	if len(back) != 3 {
		t.Fatalf("responses %+v", back)
	}
	d := back[1]
	msg, _ := d.ExtValue(codec.ExtErrorMsg)
	if d.Cmd != 66 || d.Seq != 11 || d.UIN != 42 || d.Result != codec.ResultForbidden || !d.Flags.Has(codec.FlagResponse) || d.Flags.Has(codec.FlagHeartbeat) || len(msg) == 0 {
		t.Fatalf("deny response = %+v", d)
	}
	for name, want := range map[string]uint64{"mgp.cmd.66.denied": 1, "mgp.denied": 1, "mgp.cmd.66.responses.result.4": 1, "mgp.cmd.1.responses.result.0": 2} {
		if got := h.counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	// A client heartbeat with another seq passes untouched both ways.
	hb := frame(t, codec.Frame{Seq: 99, Flags: codec.FlagHeartbeat})
	if !bytes.Equal(h.send(id, true, hb), hb) {
		t.Fatal("client heartbeat changed")
	}
	h.reset()
	// Allow-list: anything not listed is denied; oneway denied is dropped.
	h2 := newHarness(t, `{"allow_cmds": [1]}`)
	id2 := h2.conn()
	ow := frame(t, codec.Frame{Cmd: 2, Seq: 5, Flags: codec.FlagOneway, Body: []byte("x")})
	if fwd := h2.send(id2, true, ow); len(fwd) != 0 {
		t.Fatalf("denied oneway forwarded %x", fwd)
	}
	if h2.counter("mgp.cmd.2.denied") != 1 {
		t.Fatal("oneway deny not counted")
	}
}

func TestMalformedClosesOnlyItsConnection(t *testing.T) {
	for _, cfg := range []string{``, `{"deny_cmds": [5]}`} {
		h := newHarness(t, cfg)
		bad, good := h.conn(), h.conn()
		ok := frame(t, req(1, 1, "fine"))
		junk := append(append([]byte{}, ok...), 0x7f, 1, 0, 32, 0, 0, 0, 0)
		fwd := h.send(bad, true, junk)
		if h.rec[bad].closes != 1 || h.counter("mgp.malformed") != 1 {
			t.Fatalf("cfg %q: closes=%d malformed=%d", cfg, h.rec[bad].closes, h.counter("mgp.malformed"))
		}
		if cfg != "" && !bytes.Equal(fwd, ok) {
			t.Fatalf("cfg %q: frames before the bad one: forwarded %x", cfg, fwd)
		}
		if got := h.send(good, true, ok); !bytes.Equal(got, ok) || h.rec[good].closes != 0 {
			t.Fatalf("cfg %q: other connection affected", cfg)
		}
		if h.counter("mgp.cmd.1.requests") != 2 {
			t.Fatalf("cfg %q: requests = %d", cfg, h.counter("mgp.cmd.1.requests"))
		}
		h.reset()
	}
	// Too large: rejected from the header, with a small limit.
	h := newHarness(t, `{"max_frame_size": 128}`)
	id := h.conn()
	h.send(id, true, frame(t, req(1, 1, string(make([]byte, 200))))[:16])
	if h.rec[id].closes != 1 {
		t.Fatal("oversized frame did not close the connection")
	}
	h.reset()
	// on_malformed pass: the connection goes on, unparsed.
	hp := newHarness(t, `{"on_malformed": "pass"}`)
	idp := hp.conn()
	garbage := []byte("GET / HTTP/1.1\r\n\r\n")
	if got := hp.send(idp, true, garbage); !bytes.Equal(got, garbage) || hp.rec[idp].closes != 0 {
		t.Fatal("pass mode changed or closed the connection")
	}
	hp.send(idp, true, frame(t, req(3, 1, "")))
	if hp.counter("mgp.cmd.3.requests") != 0 {
		t.Fatal("pass mode kept parsing")
	}
}

func TestUpstreamLatencyMatchedBySeq(t *testing.T) {
	now := int64(1_000_000_000)
	clock = func() int64 { return now }
	defer func() { clock = defaultClock }()
	h := newHarness(t, ``)
	id := h.conn()
	h.send(id, true, append(frame(t, req(5, 1, "a")), frame(t, req(6, 2, "b"))...))
	now += 1500 * 1000 // 1.5 ms
	h.send(id, false, frame(t, resp(6, 2, 0)))
	if v, err := h.host.GetHistogramMetric("mgp.cmd.6.latency_us"); err != nil || v != 1500 {
		t.Fatalf("latency = %d, %v; want 1500", v, err)
	}
	now += 500 * 1000
	h.send(id, false, frame(t, resp(5, 1, 0)))
	if v, _ := h.host.GetHistogramMetric("mgp.cmd.5.latency_us"); v != 2000 {
		t.Fatalf("latency = %d, want 2000", v)
	}
	h.send(id, false, frame(t, resp(5, 77, 0)))
	if h.counter("mgp.responses.unmatched") != 1 {
		t.Fatal("unmatched response not counted")
	}
}

// TestSteadyStateAllocs: per-frame processing reuses its buffers.
func TestSteadyStateAllocs(t *testing.T) {
	defer newHarness(t, `{"deny_cmds": [9]}`).reset() // a host for the metric calls
	cfg, _ := ParseConfig([]byte(`{"deny_cmds": [9]}`))
	c := newConn(cfg, mgp.New(0), newStats(), &recorder{})
	r := frame(t, req(1, 1, string(make([]byte, 1024))))
	p := frame(t, resp(1, 1, 0))
	half := len(r) / 2
	c.onData(true, r, false)
	c.onData(false, p, false)
	allocs := testing.AllocsPerRun(200, func() {
		c.onData(true, r[:half], false)
		c.onData(true, r[half:], false)
		c.onData(false, p, false)
	})
	if allocs != 0 {
		t.Fatalf("allocs per frame = %v, want 0", allocs)
	}
}

func BenchmarkFilterFrame(b *testing.B) {
	for _, cfg := range []string{``, `{"deny_cmds": [9]}`} {
		b.Run("policy="+fmt.Sprint(cfg != ""), func(b *testing.B) {
			opt := proxytest.NewEmulatorOption().WithVMContext(&vmContext{})
			_, reset := proxytest.NewHostEmulator(opt)
			defer reset()
			c0, _ := ParseConfig([]byte(cfg))
			c := newConn(c0, mgp.New(0), newStats(), &recorder{})
			r := frame(b, req(1, 1, string(make([]byte, 1024))))
			p := frame(b, resp(1, 1, 0))
			b.SetBytes(int64(len(r)))
			b.ReportAllocs()
			for b.Loop() {
				c.onData(true, r, false)
				c.onData(false, p, false)
			}
		})
	}
}

// TestCmdCardinalityCapped: wire-chosen cmds cannot create unbounded
// metrics; past maxCmds they count under "other".
func TestCmdCardinalityCapped(t *testing.T) {
	h := newHarness(t, ``)
	id := h.conn()
	var in []byte
	for i := uint32(0); i < maxCmds+10; i++ {
		in = append(in, frame(t, codec.Frame{Cmd: 1000 + i, Seq: i, Flags: codec.FlagOneway})...)
	}
	h.send(id, true, in)
	if got := h.counter("mgp.cmd.1000.requests"); got != 1 {
		t.Fatalf("first cmd requests = %d", got)
	}
	if got := h.counter("mgp.cmd.other.requests"); got != 10 {
		t.Fatalf("other requests = %d, want 10", got)
	}
	if _, err := h.host.GetCounterMetric(fmt.Sprintf("mgp.cmd.%d.requests", 1000+maxCmds)); err == nil {
		t.Fatal("metric defined past the cap")
	}
}

// TestPendingDenialsBounded: denied requests whose probes are never
// answered stop being tracked at maxTracked (dropped, still counted).
func TestPendingDenialsBounded(t *testing.T) {
	h := newHarness(t, `{"deny_cmds": [9]}`)
	id := h.conn()
	var in []byte
	for i := uint32(0); i < maxTracked+5; i++ {
		in = append(in, frame(t, req(9, i, ""))...)
	}
	probes := decodeAll(t, h.send(id, true, in))
	if len(probes) != maxTracked {
		t.Fatalf("probes = %d, want %d", len(probes), maxTracked)
	}
	if got := h.counter("mgp.denied"); got != maxTracked+5 {
		t.Fatalf("denied = %d", got)
	}
}

// BenchmarkFilterFrameViaHost drives the filter through the proxytest host
// emulator's callbacks (the SDK's buffer copy-out included), one request
// and one response per iteration.
func BenchmarkFilterFrameViaHost(b *testing.B) {
	for _, cfg := range []string{``, `{"deny_cmds": [9]}`} {
		b.Run("policy="+fmt.Sprint(cfg != ""), func(b *testing.B) {
			newOps = func() ops { return &recorder{} }
			defer func() { newOps = func() ops { return sdkOps{} } }()
			opt := proxytest.NewEmulatorOption().WithVMContext(&vmContext{}).WithPluginConfiguration([]byte(cfg))
			host, reset := proxytest.NewHostEmulator(opt)
			defer reset()
			if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
				b.Fatal(st)
			}
			id, _ := host.InitializeConnection()
			r := frame(b, req(1, 1, string(make([]byte, 1024))))
			p := frame(b, resp(1, 1, 0))
			b.SetBytes(int64(len(r)))
			b.ReportAllocs()
			for b.Loop() {
				host.CallOnDownstreamData(id, r)
				host.CallOnUpstreamData(id, p)
			}
		})
	}
}
