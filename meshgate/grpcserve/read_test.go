package grpcserve

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshgate/meshgate/internal/testkit"
)

// block is the HPACK encoding of kv (name, value pairs) with rc's
// encoder (its dynamic table follows).
func (rc *rawClient) block(kv ...string) []byte {
	rc.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), rc.hbuf.Bytes()...)
}

// TestReadFrameVerdicts: the frames readFrame parses itself (HEADERS with
// a whole block, PING, WINDOW_UPDATE) and their malformed neighbours,
// which it leaves to the Framer, get the verdicts the Framer gave them
// when it parsed every frame: served, RST_STREAM PROTOCOL_ERROR for the
// stream (the connection and a call in flight go on), or GOAWAY with the
// Framer's code, counted under its reason.
func TestReadFrameVerdicts(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.MaxHeaderListSize = 1 << 10 })
	type verdict struct {
		rst    bool          // RST_STREAM PROTOCOL_ERROR on stream 3
		goAway http2.ErrCode // GOAWAY code (rst false; 0 with ok)
		reason string        // counted reason of a GOAWAY
		ok     bool          // stream 3 served
	}
	served := verdict{ok: true}
	reset := verdict{rst: true}
	conn := func(code http2.ErrCode, reason string) verdict { return verdict{goAway: code, reason: reason} }
	cases := []struct {
		name string
		send func(t *testing.T, rc *rawClient) // stream 3 (or the frame under test)
		want verdict
	}{
		{"plain HEADERS", func(t *testing.T, rc *rawClient) { rc.headers(3, false, grpcReq...) }, served},
		{"padded HEADERS", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: rc.block(grpcReq...), EndHeaders: true, PadLength: 7})
		}, served},
		{"HEADERS with priority", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: rc.block(grpcReq...), EndHeaders: true,
				Priority: http2.PriorityParam{StreamDep: 1, Weight: 200}})
		}, served},
		{"padding longer than the frame", func(t *testing.T, rc *rawClient) {
			b := rc.block(grpcReq...)
			_ = rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream|http2.FlagHeadersPadded, 3,
				append([]byte{byte(len(b) + 5)}, b...))
		}, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"HEADERS and CONTINUATION, then the table they filled", func(t *testing.T, rc *rawClient) {
			b := rc.block(reqWith("x-cont", "v1")...)
			_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:3]})
			_ = rc.fr.WriteContinuation(3, false, b[3:6])
			_ = rc.fr.WriteContinuation(3, true, b[6:])
			_ = rc.fr.WriteData(3, true, msg([]byte("three")))
			if m, err := rc.statusOf(3); err != nil || m["grpc-status"] != "0" {
				t.Fatalf("continued block: %v %v", m, err)
			}
			rc.headers(5, false, reqWith("x-cont", "v1")...) // indexed fields of the dynamic table
			_ = rc.fr.WriteData(5, true, msg([]byte("five")))
			if m, err := rc.statusOf(5); err != nil || m["grpc-status"] != "0" {
				t.Fatalf("block after it: %v %v", m, err)
			}
		}, verdict{}},
		{"HEADERS on stream 0", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 0, rc.block(grpcReq...))
		}, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"HEADERS on an even stream", func(t *testing.T, rc *rawClient) { rc.headers(4, true, grpcReq...) }, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"HEADERS larger than twice both header list budgets", func(t *testing.T, rc *rawClient) {
			b := rc.block(reqWith("x-big", strings.Repeat("~", 4200))...) // longer in Huffman code: sent as is
			_ = rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, b)
		}, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"value longer than the header list limit", func(t *testing.T, rc *rawClient) {
			b := rc.block(reqWith("x-big", strings.Repeat("a", 3000))...) // Huffman: under 4 KB
			_ = rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, b)
		}, conn(http2.ErrCodeCompression, ReasonHeaderBlock)},
		{"header list over the limit", func(t *testing.T, rc *rawClient) {
			rc.headers(3, true, reqWith("x-a", strings.Repeat("a", 600), "x-b", strings.Repeat("b", 600))...)
			if m, err := rc.statusOf(3); err != nil || m["grpc-status"] != "13" {
				t.Fatalf("stream 3: %v %v; want grpc-status 13", m, err)
			}
		}, verdict{}},
		{"bad HPACK index", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, []byte{0xff, 0x80, 0x80, 0x80, 0x08})
		}, conn(http2.ErrCodeCompression, ReasonHeaderBlock)},
		{"truncated HPACK", func(t *testing.T, rc *rawClient) {
			b := rc.block(reqWith("x-long", "abcdefgh")...)
			_ = rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, b[:len(b)-2])
		}, conn(http2.ErrCodeCompression, ReasonHeaderBlock)},
		{"uppercase name", func(t *testing.T, rc *rawClient) { rc.headers(3, true, reqWith("X-Up", "v")...) }, reset},
		{"control byte in a value", func(t *testing.T, rc *rawClient) { rc.headers(3, true, reqWith("x-v", "a\x01b")...) }, reset},
		{"pseudo-header after a regular one", func(t *testing.T, rc *rawClient) {
			rc.headers(3, true, append([]string{"x-first", "1"}, grpcReq...)...)
		}, reset},
		{"unknown pseudo-header", func(t *testing.T, rc *rawClient) { rc.headers(3, true, append([]string{":foo", "1"}, grpcReq...)...) }, reset},
		{"duplicate pseudo-header", func(t *testing.T, rc *rawClient) {
			rc.headers(3, true, append([]string{":path", "/t.S/M"}, grpcReq...)...)
		}, reset},
		{"response pseudo-header in a request", func(t *testing.T, rc *rawClient) {
			rc.headers(3, true, append([]string{":status", "200"}, grpcReq...)...)
		}, reset},
		{"PING", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WritePing(false, [8]byte{1, 2, 3})
			if _, err := rc.until(func(f http2.Frame) bool {
				p, ok := f.(*http2.PingFrame)
				return ok && p.IsAck() && p.Data == [8]byte{1, 2, 3}
			}); err != nil {
				t.Fatalf("ping ack: %v", err)
			}
			rc.headers(3, false, grpcReq...)
		}, served},
		{"PING on a stream", func(t *testing.T, rc *rawClient) { _ = rc.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8)) }, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"short PING", func(t *testing.T, rc *rawClient) { _ = rc.fr.WriteRawFrame(http2.FramePing, 0, 0, make([]byte, 7)) }, conn(http2.ErrCodeFrameSize, ReasonProtocol)},
		{"long PING", func(t *testing.T, rc *rawClient) { _ = rc.fr.WriteRawFrame(http2.FramePing, 0, 0, make([]byte, 9)) }, conn(http2.ErrCodeFrameSize, ReasonProtocol)},
		{"PING within a header block", func(t *testing.T, rc *rawClient) {
			b := rc.block(grpcReq...)
			_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:4], EndStream: true})
			_ = rc.fr.WritePing(false, [8]byte{})
		}, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"WINDOW_UPDATE", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteWindowUpdate(0, 1000)
			_ = rc.fr.WriteWindowUpdate(1, 1000)
			rc.headers(3, false, grpcReq...)
		}, served},
		{"zero WINDOW_UPDATE on the connection", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0x80, 0, 0, 0}) // the reserved bit only
		}, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"zero WINDOW_UPDATE on a stream", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 1, []byte{0, 0, 0, 0})
		}, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"short WINDOW_UPDATE", func(t *testing.T, rc *rawClient) {
			_ = rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 1})
		}, conn(http2.ErrCodeFrameSize, ReasonProtocol)},
		{"WINDOW_UPDATE on an idle stream", func(t *testing.T, rc *rawClient) { _ = rc.fr.WriteWindowUpdate(9, 1) }, conn(http2.ErrCodeProtocol, ReasonProtocol)},
		{"WINDOW_UPDATE over the window limit", func(t *testing.T, rc *rawClient) { _ = rc.fr.WriteWindowUpdate(0, 1<<31-1) }, conn(http2.ErrCodeFlowControl, ReasonProtocol)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before float64
			if tc.want.reason != "" {
				before = testutil.ToFloat64(ts.errs.WithLabelValues("l", tc.want.reason))
			}
			rc := rawDial(t, ts.addr)
			defer rc.nc.Close()
			rc.headers(1, false, grpcReq...) // in flight: its body comes last
			tc.send(t, rc)
			w := tc.want
			switch {
			case w.ok:
				_ = rc.fr.WriteData(3, true, msg([]byte("three")))
				if m, err := rc.statusOf(3); err != nil || m["grpc-status"] != "0" {
					t.Fatalf("stream 3: %v %v; want served", m, err)
				}
			case w.rst:
				if code, err := rc.rstOf(3); err != nil || code != http2.ErrCodeProtocol {
					t.Fatalf("stream 3: RST %v, %v; want PROTOCOL_ERROR", code, err)
				}
			case w.reason != "":
				if code, err := rc.goAway(); err != nil || code != w.goAway {
					t.Fatalf("GOAWAY %v, %v; want %v", code, err, w.goAway)
				}
				testkit.Within(t, 2*time.Second, "counted as "+w.reason, func() bool {
					return testutil.ToFloat64(ts.errs.WithLabelValues("l", w.reason)) > before
				})
				return
			}
			_ = rc.fr.WriteData(1, true, msg([]byte("one")))
			if m, err := rc.statusOf(1); err != nil || m["grpc-status"] != "0" {
				t.Fatalf("call in flight: %v %v", m, err)
			}
		})
	}
}

// TestReadFrameWindowUpdateAllocs: a WINDOW_UPDATE, which a grpc-go
// client sends with most calls, is read without allocating (the Framer
// allocated a WindowUpdateFrame for each).
func TestReadFrameWindowUpdateAllocs(t *testing.T) {
	ln := testkit.Listen(t, "127.0.0.1:0")
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s := New(Config{Name: "l"})
	c := newConn(s, nc)
	c.br = &connReader{src: nc, held: &s.held, batch: &c.batch, keep: true}
	c.fr = c.newFramer(hpack.NewDecoder(4096, nil))
	const runs = 100
	cfr := http2.NewFramer(cc, nil)
	for range runs + 1 { // AllocsPerRun runs once more to warm up
		if err := cfr.WriteWindowUpdate(0, 1); err != nil {
			t.Fatal(err)
		}
	}
	var rerr error
	allocs := testing.AllocsPerRun(runs, func() {
		if err := c.readFrame(); err != nil {
			rerr = err
		}
	})
	if rerr != nil {
		t.Fatal(rerr)
	}
	if allocs != 0 {
		t.Fatalf("%.1f allocations per WINDOW_UPDATE, want 0", allocs)
	}
	if want := int64(defaultWindow + runs + 1); c.connSendWin != want {
		t.Fatalf("send window %d, want %d", c.connSendWin, want)
	}
}
