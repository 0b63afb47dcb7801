package grpcserve

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// Attacks on the direct transport by raw HTTP/2 clients (x/net/http2's
// Framer, where grpc-go would refuse to misbehave), each against a real
// Server on 127.0.0.1.

// rstOf reads frames until a RST_STREAM on stream id and returns its code.
func (rc *rawClient) rstOf(id uint32) (http2.ErrCode, error) {
	f, err := rc.until(func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	})
	if err != nil {
		return 0, err
	}
	return f.(*http2.RSTStreamFrame).ErrCode, nil
}

// TestHostileInvalidHeaderFieldResetsStream: a request whose header block
// decodes but is invalid HTTP/2 (a connection-specific field, an
// uppercase name, a duplicate pseudo-header) is refused with RST_STREAM
// PROTOCOL_ERROR, as grpc-go's server does; the connection and the call
// in flight on it go on. (Before: the Framer's stream error closed the
// connection without GOAWAY, losing every other stream on it.)
func TestHostileInvalidHeaderFieldResetsStream(t *testing.T) {
	ts := start(t, handlerFunc(echo), nil)
	rc := rawDial(t, ts.addr)
	rc.headers(1, false, grpcReq...) // in flight: its body comes last
	bad := [][]string{
		reqWith("connection", "keep-alive"),
		reqWith("X-Upper", "v"),
		append(append([]string{}, grpcReq...), ":path", "/t.S/Other"),
	}
	id := uint32(3)
	for _, h := range bad {
		rc.headers(id, true, h...)
		code, err := rc.rstOf(id)
		if err != nil || code != http2.ErrCodeProtocol {
			t.Fatalf("stream %d: RST %v, %v; want PROTOCOL_ERROR", id, code, err)
		}
		id += 2
	}
	_ = rc.fr.WriteData(1, true, msg([]byte("still here")))
	if m, err := rc.statusOf(1); err != nil || m["grpc-status"] != "0" {
		t.Fatalf("call in flight: %v %v", m, err)
	}
	// A stream id at or below one already used stays a connection error.
	rc.headers(3, true, reqWith("connection", "x")...)
	if code, err := rc.goAway(); err != nil || code != http2.ErrCodeStreamClosed {
		t.Fatalf("reused id: GOAWAY %v %v", code, err)
	}
}

// TestHostileZeroWindowUpdate: WINDOW_UPDATE with a zero increment on a
// stream ends the connection with GOAWAY PROTOCOL_ERROR and is counted
// (before: closed silently, uncounted).
func TestHostileZeroWindowUpdate(t *testing.T) {
	ts := start(t, handlerFunc(echo), nil)
	rc := rawDial(t, ts.addr)
	rc.headers(1, false, grpcReq...)
	_ = rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 1, []byte{0, 0, 0, 0})
	if code, err := rc.goAway(); err != nil || code != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v %v", code, err)
	}
	testkit.Within(t, 2*time.Second, "counted", func() bool {
		return testutil.ToFloat64(ts.errs.WithLabelValues("l", ReasonProtocol)) == 1
	})
}

// TestHostileResetDoesNotFreeHandlers: streams the client resets while
// their handler still runs (one that ignores cancellation) keep counting
// against MAX_CONCURRENT_STREAMS until the handler returns, so HEADERS +
// RST_STREAM loops below the rapid-reset rate cannot run more handlers
// than the limit (before: every reset freed its slot at once and the
// handlers piled up).
func TestHostileResetDoesNotFreeHandlers(t *testing.T) {
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	var running, peak atomic.Int64
	ts := start(t, handlerFunc(func(c *Call) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-hold // ignores the cancellation
		running.Add(-1)
		c.Finish(status.Error(codes.Canceled, "late"))
	}), func(c *Config) { c.MaxConcurrentStreams = 8; c.MaxResetsPerSecond = 10000 })
	t.Cleanup(release) // before the server's Close (cleanups run last first)
	rc := rawDial(t, ts.addr)
	const streams = 40
	for i := range streams {
		id := uint32(2*i + 1)
		rc.headers(id, false, grpcReq...)
		_ = rc.fr.WriteData(id, true, msg([]byte("x")))
		_ = rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	last := uint32(2*streams - 1)
	refused := rc.refusedUntil(last)
	release()
	if p := peak.Load(); p > 8 {
		t.Fatalf("%d handlers ran at once; MAX_CONCURRENT_STREAMS is 8", p)
	}
	if refused < streams-8 {
		t.Fatalf("%d streams refused, want ≥ %d", refused, streams-8)
	}
	testkit.Within(t, 3*time.Second, "handlers returned", func() bool { return ts.inflight() == 0 })
	// The connection serves again once the handlers returned.
	rc.headers(last+2, false, grpcReq...)
	_ = rc.fr.WriteData(last+2, true, msg([]byte("x")))
	if m, err := rc.statusOf(last + 2); err != nil || m["grpc-status"] != "1" {
		t.Fatalf("after: %v %v", m, err)
	}
}

// TestHostileStalledFastReply: a client that reads the socket but never
// grants send window (INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) held a
// fast-path reply and its stream forever; now the stream is reset CANCEL
// after WriteTimeout, counted "stalled", and the connection still serves.
func TestHostileStalledFastReply(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.WriteTimeout = 300 * time.Millisecond })
	rc := rawDial(t, ts.addr)
	_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.headers(1, false, grpcReq...)
	_ = rc.fr.WriteData(1, true, msg(make([]byte, 1000)))
	if code, err := rc.rstOf(1); err != nil || code != http2.ErrCodeCancel {
		t.Fatalf("stalled reply: RST %v, %v", code, err)
	}
	testkit.Within(t, 2*time.Second, "counted", func() bool {
		return testutil.ToFloat64(ts.errs.WithLabelValues("l", ReasonStalled)) == 1
	})
	testkit.Within(t, 2*time.Second, "stream gone", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for c := range ts.conns {
			c.mu.Lock()
			n := len(c.streams)
			c.mu.Unlock()
			if n != 0 {
				return false
			}
		}
		return true
	})
	// A reply whose window is granted is still written.
	_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	rc.wantOK(3, "after")
}

// TestHostileFlowControlAndSettings: window and SETTINGS abuse.
func TestHostileFlowControlAndSettings(t *testing.T) {
	ts := start(t, handlerFunc(echo), nil)
	t.Run("conn window overflow", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		_ = rc.fr.WriteWindowUpdate(0, 1<<31-1)
		if code, err := rc.goAway(); err != nil || code != http2.ErrCodeFlowControl {
			t.Fatalf("GOAWAY %v %v", code, err)
		}
	})
	t.Run("stream window overflow", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		rc.headers(1, false, grpcReq...)
		_ = rc.fr.WriteWindowUpdate(1, 1<<31-1)
		if code, err := rc.rstOf(1); err != nil || code != http2.ErrCodeFlowControl {
			t.Fatalf("RST %v %v", code, err)
		}
		rc.wantOK(3, "after")
	})
	t.Run("initial window too large", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		if code, err := rc.goAway(); err != nil || code != http2.ErrCodeFlowControl {
			t.Fatalf("GOAWAY %v %v", code, err)
		}
	})
	t.Run("max frame size too small", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100})
		if code, err := rc.goAway(); err != nil || code != http2.ErrCodeProtocol {
			t.Fatalf("GOAWAY %v %v", code, err)
		}
	})
	t.Run("negative window mid-reply then granted", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1<<24 - 1})
		big := make([]byte, 200<<10)
		rc.headers(1, false, grpcReq...)
		for b := msg(big); len(b) > 0; {
			n := min(len(b), 16384)
			_ = rc.fr.WriteData(1, n == len(b), b[:n])
			b = b[n:]
		}
		// Shrink the window below zero while the reply is pending.
		_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		got := 0
		granted := false
		for {
			f, err := rc.until(func(http2.Frame) bool { return true })
			if err != nil {
				t.Fatalf("after %d bytes: %v", got, err)
			}
			if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
				got += len(d.Data())
			}
			if _, ok := f.(*http2.SettingsFrame); ok && !granted {
				// Once our SETTINGS are acked: open both windows wide.
				granted = true
				_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
				_ = rc.fr.WriteWindowUpdate(0, 1<<20)
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 1 && h.StreamEnded() {
				break
			}
		}
		if got != len(big)+5 {
			t.Fatalf("reply %d bytes, want %d", got, len(big)+5)
		}
	})
	t.Run("PRIORITY and unknown frames ignored, PUSH_PROMISE refused", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		_ = rc.fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 9})
		_ = rc.fr.WriteRawFrame(0xee, 0, 0, []byte("whatever"))
		rc.wantOK(1, "after")
		_ = rc.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true})
		if code, err := rc.goAway(); err != nil || code != http2.ErrCodeProtocol {
			t.Fatalf("GOAWAY %v %v", code, err)
		}
	})
}

// TestHostileResetWhileAnswering: the client resets streams exactly
// while their replies are written from other goroutines (run with
// -race): no panic, no race, the connection keeps serving.
func TestHostileResetWhileAnswering(t *testing.T) {
	ts := start(t, handlerFunc(func(c *Call) { go echo(c) }), func(c *Config) { c.MaxResetsPerSecond = 100000 })
	rc := rawDial(t, ts.addr)
	// Windows wide open: the replies that do get written must not use up
	// the connection window the last reply needs.
	_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	_ = rc.fr.WriteWindowUpdate(0, 1<<30)
	const n = 300
	last := uint32(2*n + 1)
	got := make(chan map[string]string, 1)
	go func() { // reads all along, so that the server's writes never wait
		m, err := rc.statusOf(last)
		if err != nil {
			m = map[string]string{"err": err.Error()}
		}
		got <- m
	}()
	payload := msg(make([]byte, 3000))
	for i := range n {
		id := uint32(2*i + 1)
		rc.headers(id, false, grpcReq...)
		_ = rc.fr.WriteData(id, true, payload)
		_ = rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	testkit.Within(t, 3*time.Second, "calls settled", func() bool { return ts.inflight() == 0 })
	rc.headers(last, false, grpcReq...)
	_ = rc.fr.WriteData(last, true, msg([]byte("last")))
	if m := testkit.Receive(t, got, 5*time.Second, "last reply"); m["grpc-status"] != "0" {
		t.Fatalf("after the resets: %v", m)
	}
}

// TestHostileAttackersBounded: connections that open MAX_CONCURRENT_STREAMS
// delegated streams and never half-close or read, and connections that
// send fast-path calls with large replies and never read the socket, do
// not stop another client's calls (each within its deadline); heap stays
// bounded; once the attackers leave, goroutines return to the baseline.
func TestHostileAttackersBounded(t *testing.T) {
	ts, _, _, _ := startHybrid(t, func(c *Config) {
		c.MaxConcurrentStreams = 20
		c.WriteTimeout = 500 * time.Millisecond
	})
	cc := dial(t, ts.addr)
	call := func(ctx context.Context) error {
		var resp []byte
		return cc.Invoke(ctx, "/t.S/M", &[]byte{7}, &resp)
	}
	if err := call(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	baseG := runtime.NumGoroutine()
	baseHeap := testkit.HeapInuse()

	var attackers []*rawClient
	dup := reqWith(":path", "/grpc.testing.TestService/FullDuplexCall")
	for range 6 { // delegated streams held open, never read
		rc := rawDial(t, ts.addr)
		_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		for i := range 20 {
			rc.headers(uint32(2*i+1), false, dup...)
		}
		attackers = append(attackers, rc)
	}
	big := msg(make([]byte, 256<<10))
	for range 4 { // fast-path calls with large replies, socket never read
		rc := rawDial(t, ts.addr)
		for i := range 20 {
			id := uint32(2*i + 1)
			rc.headers(id, false, grpcReq...)
			for b := big; len(b) > 0; {
				n := min(len(b), 16384)
				if rc.fr.WriteData(id, n == len(b), b[:n]) != nil {
					break
				}
				b = b[n:]
			}
		}
		attackers = append(attackers, rc)
	}
	// Meanwhile another client is served within its deadlines.
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := call(ctx)
		cancel()
		if err != nil {
			t.Fatalf("served client: %v", err)
		}
	}
	runtime.GC()
	if grown := int64(testkit.HeapInuse()) - int64(baseHeap); grown > 64<<20 {
		t.Fatalf("heap grew %d MiB under attack", grown>>20)
	}
	for _, rc := range attackers {
		_ = rc.nc.Close()
	}
	// The blocking handler's worker pool (4 × GOMAXPROCS long-lived
	// goroutines) may have grown meanwhile; nothing else may stay.
	limit := baseG + 4*runtime.GOMAXPROCS(0) + 2
	if !testkit.Await(5*time.Second, func() bool { return runtime.NumGoroutine() <= limit }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines %d, baseline %d:\n%s", runtime.NumGoroutine(), baseG, buf[:runtime.Stack(buf, true)])
	}
	if err := call(ctxT(t, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestHostileHeaderAbuse: oversized header lists, a slow preface and
// grpc-timeout extremes.
func TestHostileHeaderAbuse(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.MaxHeaderListSize = 4 << 10; c.HandshakeTimeout = 300 * time.Millisecond })
	t.Run("header list over the limit", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		rc.hbuf.Reset()
		for i := 0; i+1 < len(grpcReq); i += 2 {
			_ = rc.henc.WriteField(hpack.HeaderField{Name: grpcReq[i], Value: grpcReq[i+1]})
		}
		_ = rc.henc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("a", 3000)})
		_ = rc.henc.WriteField(hpack.HeaderField{Name: "x-big2", Value: strings.Repeat("b", 3000)})
		_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.hbuf.Bytes(), EndHeaders: true, EndStream: true})
		if m, err := rc.statusOf(1); err != nil || m["grpc-status"] != "13" {
			t.Fatalf("%v %v", m, err)
		}
		rc.wantOK(3, "after")
	})
	t.Run("grpc-timeout extremes", func(t *testing.T) {
		rc := rawDial(t, ts.addr)
		for i, c := range []struct{ v, want string }{
			{"99999999H", "0"}, {"1n", "4"}, {"0S", "4"}, {"123456789S", "13"}, {"-1S", "13"}, {"10x", "13"}, {"S", "13"}, {"", "0"},
		} {
			id := uint32(2*i + 1)
			rc.headers(id, false, reqWith("grpc-timeout", c.v)...)
			_ = rc.fr.WriteData(id, true, msg([]byte("x")))
			if m, err := rc.statusOf(id); err != nil || m["grpc-status"] != c.want {
				t.Fatalf("grpc-timeout %q: %v %v, want grpc-status %s", c.v, m, err, c.want)
			}
		}
	})
	t.Run("slowloris preface", func(t *testing.T) {
		before := testutil.ToFloat64(ts.errs.WithLabelValues("l", ReasonHandshake))
		rc := rawDialNoPreface(t, ts.addr)
		done := make(chan error, 1)
		go func() {
			for i := range len(http2.ClientPreface) {
				if _, err := rc.nc.Write([]byte{http2.ClientPreface[i]}); err != nil {
					done <- err
					return
				}
				time.Sleep(50 * time.Millisecond) // the trickle itself, not a wait for a result
			}
			done <- nil
		}()
		if _, err := rc.until(func(http2.Frame) bool { return false }); err == nil {
			t.Fatal("connection not closed")
		}
		testkit.Within(t, 2*time.Second, "counted", func() bool {
			return testutil.ToFloat64(ts.errs.WithLabelValues("l", ReasonHandshake)) > before
		})
		_ = rc.nc.Close()
		<-done
	})
}

// rawDialNoPreface is rawDial without the preface and SETTINGS.
func rawDialNoPreface(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, fr := testkit.H2Dial(t, addr, 10*time.Second)
	rc := &rawClient{t: t, nc: nc, fr: fr}
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	return rc
}

// replyCase is what a handler answers in TestHostileRepliesMatchGrpcGo.
type replyCase struct {
	st      *status.Status
	header  bool // sets header metadata
	trailer bool // sets trailer metadata
	reply   bool // sends a message
}

func replyCases() []replyCase {
	msgs := []string{"", "plain", "100% done", "héllo ✓ 世界", "bad\xffutf8\x80", "tab\tnl\n"}
	var cs []replyCase
	for code := codes.OK; code <= codes.Unauthenticated; code++ {
		for _, m := range msgs {
			cs = append(cs, replyCase{st: status.New(code, m)})
		}
		cs = append(cs, replyCase{st: status.New(code, "h"), header: true, trailer: true})
	}
	det, _ := status.New(codes.InvalidArgument, "with details").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "f", Description: "d"}}})
	cs = append(cs,
		replyCase{st: det}, replyCase{st: det, header: true},
		replyCase{st: status.New(codes.OK, ""), reply: true},
		replyCase{st: status.New(codes.OK, ""), reply: true, header: true, trailer: true},
		replyCase{st: status.New(codes.Aborted, "after a message"), reply: true, trailer: true},
	)
	return cs
}

// caseOf is the case a request's "x-case" metadata names.
func caseOf(md map[string][]string) replyCase {
	var i int
	if v := md["x-case"]; len(v) == 1 {
		for _, c := range v[0] {
			i = 10*i + int(c-'0')
		}
	}
	return replyCases()[i]
}

// TestHostileRepliesMatchGrpcGo sends the same raw requests to the
// direct transport and to a real grpc-go server whose handler gives the
// same result, and compares what comes back frame by frame (HEADERS with
// their END_STREAM flag and decoded field set, DATA bytes, RST_STREAM
// codes): every status code 0..16 with messages needing percent-encoding
// (non-ASCII, '%', invalid UTF-8, control characters), status details,
// header and trailer metadata, with and without a reply message; and
// malformed or odd requests (content-type variants, :method GET, no TE,
// :authority/host variants, :scheme, bad grpc-timeout, a connection
// header).
func TestHostileRepliesMatchGrpcGo(t *testing.T) {
	ours := start(t, handlerFunc(func(c *Call) {
		rc := caseOf(c.Metadata())
		if rc.header {
			_ = c.SetHeader(metadata.Pairs("h-key", "hv", "h-bin", "\x00\x01"))
		}
		if rc.trailer {
			_ = c.SetTrailer(metadata.Pairs("t-key", "tv"))
		}
		if rc.reply {
			_ = c.SendMsg([]byte("reply"))
		}
		c.Finish(rc.st.Err())
	}), nil)
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		var in []byte
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		rc := caseOf(md)
		if rc.header {
			_ = ss.SetHeader(metadata.Pairs("h-key", "hv", "h-bin", "\x00\x01"))
		}
		if rc.trailer {
			ss.SetTrailer(metadata.Pairs("t-key", "tv"))
		}
		if rc.reply && rc.st.Code() == codes.OK { // unary: no reply with an error (Call.Finish)
			if err := ss.SendMsg([]byte("reply")); err != nil {
				return err
			}
		}
		return rc.st.Err()
	}))
	ln := testkit.Listen(t, "127.0.0.1:0")
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)

	type req struct {
		name string
		hdr  []string
	}
	var reqs []req
	for i := range replyCases() {
		reqs = append(reqs, req{"case " + strconv.Itoa(i), reqWith("x-case", strconv.Itoa(i))})
	}
	with := func(name string, set ...string) req { return req{name, append(reqWith(set...), "x-case", "0")} }
	without := func(name, key string, extra ...string) req {
		var h []string
		for j := 0; j+1 < len(grpcReq); j += 2 {
			if grpcReq[j] != key {
				h = append(h, grpcReq[j], grpcReq[j+1])
			}
		}
		return req{name, append(append(h, extra...), "x-case", "0")}
	}
	reqs = append(reqs,
		with("grpc+proto", "content-type", "application/grpc+proto"),
		with("grpc+PROTO", "content-type", "application/grpc+PROTO"),
		with("grpc;charset", "content-type", "application/grpc;charset=utf-8"),
		with("text/plain", "content-type", "text/plain"),
		with("application/grpcx", "content-type", "application/grpcx"),
		without("no content-type", "content-type"),
		without("no te", "te"),
		with("GET", ":method", "GET"),
		with("https scheme", ":scheme", "https"),
		with("odd authority", ":authority", "[::1]:99999"),
		without("no authority", ":authority"),
		without("host only", ":authority", "host", "h"),
		without("two hosts", "", "host", "a", "host", "b"),
		without("two authorities", "", ":authority", "y"),
		with("bad timeout", "grpc-timeout", "9x"),
		with("long timeout", "grpc-timeout", "123456789S"),
		with("zero timeout", "grpc-timeout", "0n"),
		with("connection header", "connection", "close"),
		with("bad bin", "x-bin", "!!!"),
	)
	var diffs []string
	for _, r := range reqs {
		a := exchange(t, ours.addr, r.hdr)
		b := exchange(t, ln.Addr().String(), r.hdr)
		if a != b {
			diffs = append(diffs, fmt.Sprintf("%s:\n  direct: %s\n  grpc-go: %s", r.name, a, b))
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("%d of %d replies differ from grpc-go's:\n%s", len(diffs), len(reqs), strings.Join(diffs, "\n"))
	}
}

// exchange sends one request (hdr, then a one-message body) on a fresh
// connection and describes the reply frames of its stream, up to the
// PING ack that follows them.
func exchange(t *testing.T, addr string, hdr []string) string {
	rc := rawDial(t, addr)
	defer rc.nc.Close()
	rc.headers(1, false, hdr...)
	_ = rc.fr.WriteData(1, true, msg([]byte("req")))
	var out []string
	var data []byte
	deadline := time.Now().Add(3 * time.Second)
	pinged := false
	for time.Now().Before(deadline) {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			out = append(out, "read: "+err.Error())
			break
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if len(data) > 0 {
				out = append(out, fmt.Sprintf("DATA %q", data))
				data = nil
			}
			var fs []string
			for _, hf := range f.Fields {
				fs = append(fs, hf.Name+"="+hf.Value)
			}
			sort.Strings(fs)
			out = append(out, fmt.Sprintf("HEADERS end=%v %v", f.StreamEnded(), fs))
			if f.StreamEnded() && !pinged {
				pinged = true
				_ = rc.fr.WritePing(false, [8]byte{9})
			}
		case *http2.DataFrame:
			data = append(data, f.Data()...)
			if f.StreamEnded() {
				out = append(out, fmt.Sprintf("DATA %q end", data))
				data = nil
			}
		case *http2.RSTStreamFrame:
			out = append(out, "RST "+f.ErrCode.String())
			if !pinged {
				pinged = true
				_ = rc.fr.WritePing(false, [8]byte{9})
			}
		case *http2.GoAwayFrame:
			out = append(out, "GOAWAY "+f.ErrCode.String())
		case *http2.PingFrame:
			if f.IsAck() && f.Data == [8]byte{9} {
				// RST_STREAM NO_ERROR after a complete response only tells
				// the client to stop sending (RFC 9113 §8.1); grpc-go's
				// server sends it when its handler answers before it read
				// the request's END_STREAM, which is a race, not a shape.
				if n := len(out); n >= 2 && out[n-1] == "RST NO_ERROR" && strings.HasPrefix(out[n-2], "HEADERS end=true") {
					out = out[:n-1]
				}
				return strings.Join(out, " | ")
			}
		}
	}
	return strings.Join(out, " | ") + " (no end)"
}

// holdFast serves /t.S/M on the fast path, holding each call until
// release; the rest goes to the Fallback.
type holdFast struct{ release chan struct{} }

func (h *holdFast) Start(c *Call) {
	go func() {
		select {
		case <-h.release:
		case <-c.Context().Done():
		}
		echo(c)
	}()
}
func (h *holdFast) Fast(method string) bool { return method == "/t.S/M" }

// TestHostileGracefulShutdownInFlight: Shutdown with a fast call and a
// delegated stream in flight on one connection sends GOAWAY NO_ERROR
// whose last-stream-id is the last stream opened; a stream opened after
// it is refused (REFUSED_STREAM: safe to retry); both calls in flight
// complete; then the connection closes and Shutdown returns.
func TestHostileGracefulShutdownInFlight(t *testing.T) {
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, interop.NewTestServer())
	t.Cleanup(gs.Stop)
	h := &holdFast{release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(h.release) })
	ts := start(t, h, func(c *Config) { c.Fallback = gs; c.Blocking = false })
	t.Cleanup(release)
	rc := rawDial(t, ts.addr)
	rc.headers(1, false, grpcReq...)
	_ = rc.fr.WriteData(1, true, msg([]byte("fast")))
	dup := reqWith(":path", "/grpc.testing.TestService/FullDuplexCall")
	rc.headers(3, false, dup...)
	testkit.Within(t, 2*time.Second, "two calls in flight", func() bool { return ts.inflight() == 2 })

	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(ctxT(t, 5*time.Second)) }()
	f, err := rc.until(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	if err != nil {
		t.Fatal(err)
	}
	if ga := f.(*http2.GoAwayFrame); ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 3 {
		t.Fatalf("GOAWAY %v last %d, want NO_ERROR last 3", ga.ErrCode, ga.LastStreamID)
	}
	rc.headers(5, true, grpcReq...)
	if code, err := rc.rstOf(5); err != nil || code != http2.ErrCodeRefusedStream {
		t.Fatalf("stream after GOAWAY: RST %v %v", code, err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with calls in flight: %v", err)
	default:
	}
	release()
	if m, err := rc.statusOf(1); err != nil || m["grpc-status"] != "0" {
		t.Fatalf("fast call: %v %v", m, err)
	}
	_ = rc.fr.WriteData(3, true, nil) // the duplex stream's client half-closes
	if m, err := rc.statusOf(3); err != nil || m["grpc-status"] != "0" {
		t.Fatalf("delegated stream: %v %v", m, err)
	}
	if err := testkit.Receive(t, shut, 3*time.Second, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := rc.until(func(http2.Frame) bool { return false }); err == nil {
		t.Fatal("connection not closed")
	}
}

// TestHostileMaxAgeClientRetries: connections drained by GOAWAY every
// 200 ms (max connection age) under a grpc-go client's steady calls
// (fast and delegated): no call fails; grpc-go moves to new connections
// on its own.
func TestHostileMaxAgeClientRetries(t *testing.T) {
	ts, _, _, _ := startHybrid(t, func(c *Config) {
		c.MaxConnectionAge, c.MaxConnectionAgeGrace = 200*time.Millisecond, 2*time.Second
	})
	cc := dial(t, ts.addr)
	pc := dialPlain(t, ts.addr)
	tc := testgrpc.NewTestServiceClient(pc)
	stop := time.Now().Add(1200 * time.Millisecond)
	var wg sync.WaitGroup
	var calls atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				var resp []byte
				err := cc.Invoke(ctx, "/t.S/M", &[]byte{1}, &resp)
				if err == nil {
					_, err = tc.EmptyCall(ctx, &testgrpc.Empty{})
				}
				cancel()
				if err != nil {
					t.Errorf("call during connection drains: %v", err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	if calls.Load() == 0 {
		t.Fatal("no calls")
	}
}

// TestHostileResetDoesNotFreeDelegated: the same on the delegated path —
// streams reset while their Fallback handler (one that ignores the
// request's context) still runs keep their slot, so the handlers running
// at once never exceed MAX_CONCURRENT_STREAMS.
func TestHostileResetDoesNotFreeDelegated(t *testing.T) {
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	var running, peak atomic.Int64
	ts := start(t, &fastOnly{}, func(c *Config) {
		c.MaxConcurrentStreams = 8
		c.MaxResetsPerSecond = 10000
		c.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			<-hold // ignores r.Context()
			running.Add(-1)
		})
	})
	t.Cleanup(release)
	rc := rawDial(t, ts.addr)
	other := reqWith(":path", "/t.S/Delegated")
	const streams = 40
	last := uint32(2*streams - 1)
	for i := range streams {
		id := uint32(2*i + 1)
		rc.headers(id, false, other...)
		_ = rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	refused := rc.refusedUntil(last)
	release()
	if p := peak.Load(); p > 8 {
		t.Fatalf("%d delegated handlers ran at once; MAX_CONCURRENT_STREAMS is 8", p)
	}
	if refused < streams-8 {
		t.Fatalf("%d streams refused, want ≥ %d", refused, streams-8)
	}
	testkit.Within(t, 3*time.Second, "handlers returned", func() bool { return ts.inflight() == 0 })
}

// TestHostileUnfinishedHeaderBlock: HEADERS without END_HEADERS and no
// CONTINUATION ever after (the reading goroutine waits inside the header
// block) opens no stream; max connection idle still ends the connection
// with GOAWAY, and another client is served meanwhile.
func TestHostileUnfinishedHeaderBlock(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.MaxConnectionIdle = 300 * time.Millisecond })
	rc := rawDial(t, ts.addr)
	rc.hbuf.Reset()
	for i := 0; i+1 < len(grpcReq); i += 2 {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: grpcReq[i], Value: grpcReq[i+1]})
	}
	_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.hbuf.Bytes()[:4], EndHeaders: false})
	var resp []byte
	if err := dial(t, ts.addr).Invoke(ctxT(t, 3*time.Second), "/t.S/M", &[]byte{1}, &resp); err != nil {
		t.Fatalf("another client: %v", err)
	}
	if code, err := rc.goAway(); err != nil || code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v %v", code, err)
	}
	if _, err := rc.until(func(http2.Frame) bool { return false }); err == nil {
		t.Fatal("connection not closed")
	}
}

// refusedUntil reads frames until the RST_STREAM of stream last and
// returns how many streams were refused (REFUSED_STREAM) meanwhile.
func (rc *rawClient) refusedUntil(last uint32) int {
	rc.t.Helper()
	refused := 0
	for {
		f, err := rc.until(func(http2.Frame) bool { return true })
		if err != nil {
			rc.t.Fatalf("after %d refused: %v", refused, err)
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			if r.ErrCode == http2.ErrCodeRefusedStream {
				refused++
			}
			if r.StreamID == last {
				return refused
			}
		}
	}
}
