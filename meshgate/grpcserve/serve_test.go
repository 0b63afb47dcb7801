package grpcserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/connlimit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// handlerFunc adapts a function to Handler.
type handlerFunc func(c *Call)

func (f handlerFunc) Start(c *Call) { f(c) }

// echoOr answers /t.S/Echo with echo (a call that shows the connection
// still serves) and every other method with f.
func echoOr(f func(c *Call)) handlerFunc {
	return func(c *Call) {
		if c.Method() == "/t.S/Echo" {
			echo(c)
			return
		}
		f(c)
	}
}

// echo answers with the request message; request metadata "echo-*" keys
// come back in the header and as trailer "t-<key>".
func echo(c *Call) {
	b, ok, more := c.Message()
	if !ok || more {
		c.Finish(status.Error(codes.Internal, "cardinality violation"))
		return
	}
	for k, v := range c.Metadata() {
		if strings.HasPrefix(k, "echo-") {
			_ = c.SetHeader(metadata.MD{k: v})
			_ = c.SetTrailer(metadata.MD{"t-" + k: v})
		}
	}
	if err := c.SendMsg(b); err != nil {
		c.Finish(err)
		return
	}
	c.Finish(nil)
}

type testServer struct {
	*Server
	addr   string
	errs   *prometheus.CounterVec
	served chan error
}

func start(t testing.TB, h Handler, mod func(*Config)) *testServer {
	t.Helper()
	errs, _ := NewErrorCounter(nil)
	cfg := Config{Name: "l", Handler: h, Blocking: true, Errors: errs}
	if mod != nil {
		mod(&cfg)
	}
	s := New(cfg)
	ln := testkit.Listen(t, "127.0.0.1:0")
	ts := &testServer{Server: s, addr: ln.Addr().String(), errs: errs, served: make(chan error, 1)}
	go func() { ts.served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

func dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{}))}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestUnaryMetadataBothWays: a grpc-go client's unary call is answered
// with its message; metadata (plain and -bin) reaches the handler and
// comes back in the header and trailers.
func TestUnaryMetadataBothWays(t *testing.T) {
	ts := start(t, handlerFunc(echo), nil)
	cc := dial(t, ts.addr)
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "echo-a", "1", "echo-b-bin", "\x00\xff\x01")
	for i := range 3 { // several calls on one connection (HPACK state)
		var hdr, trl metadata.MD
		var resp []byte
		req := []byte("hello " + strings.Repeat("x", i*100))
		if err := cc.Invoke(ctx, "/t.S/M", &req, &resp, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp, req) {
			t.Fatalf("reply %q", resp)
		}
		if hdr.Get("echo-a")[0] != "1" || hdr.Get("echo-b-bin")[0] != "\x00\xff\x01" {
			t.Fatalf("header %v", hdr)
		}
		if trl.Get("t-echo-a")[0] != "1" || trl.Get("t-echo-b-bin")[0] != "\x00\xff\x01" {
			t.Fatalf("trailer %v", trl)
		}
	}
}

// TestStatusAndDetails: code, a message needing percent-encoding and
// details reach a grpc-go client as the handler set them; the call's
// context carries the method, the peer and the deadline.
func TestStatusAndDetails(t *testing.T) {
	var gotMethod string
	var gotPeer bool
	var left time.Duration
	ts := start(t, handlerFunc(func(c *Call) {
		gotMethod, _ = grpc.MethodFromServerStream(&ctxStream{c.Context()})
		p, ok := peer.FromContext(c.Context())
		gotPeer = ok && p.Addr != nil
		if dl, ok := c.Context().Deadline(); ok {
			left = time.Until(dl)
		}
		st, _ := status.New(codes.FailedPrecondition, "bad 100% ünïcode\n").WithDetails(&errdetails.ErrorInfo{Reason: "why"})
		_ = c.SetTrailer(metadata.Pairs("x-k", "v"))
		c.Finish(st.Err())
	}), nil)
	cc := dial(t, ts.addr)
	var resp []byte
	var trl metadata.MD
	err := cc.Invoke(ctxT(t, 5*time.Second), "/t.S/Fail", &[]byte{1}, &resp, grpc.Trailer(&trl))
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "bad 100% ünïcode\n" {
		t.Fatalf("status %v", st)
	}
	if d := st.Details(); len(d) != 1 || d[0].(*errdetails.ErrorInfo).Reason != "why" {
		t.Fatalf("details %v", d)
	}
	if trl.Get("x-k")[0] != "v" {
		t.Fatalf("trailer %v", trl)
	}
	if gotMethod != "/t.S/Fail" || !gotPeer || left < 4*time.Second || left > 5*time.Second {
		t.Fatalf("method %q peer %v deadline left %v", gotMethod, gotPeer, left)
	}
}

type ctxStream struct{ ctx context.Context }

func (s *ctxStream) Context() context.Context     { return s.ctx }
func (s *ctxStream) SetHeader(metadata.MD) error  { return nil }
func (s *ctxStream) SendHeader(metadata.MD) error { return nil }
func (s *ctxStream) SetTrailer(metadata.MD)       {}
func (s *ctxStream) SendMsg(any) error            { return nil }
func (s *ctxStream) RecvMsg(any) error            { return nil }

// TestDeadlineAndCancel: the handler's context ends when the client's
// deadline passes and when the client cancels (RST_STREAM); the late
// Finish writes nothing and the connection keeps serving.
func TestDeadlineAndCancel(t *testing.T) {
	release := make(chan struct{})
	ended := make(chan error, 2)
	ts := start(t, echoOr(func(c *Call) {
		select {
		case <-c.Context().Done():
			ended <- c.Context().Err()
			c.Finish(status.FromContextError(c.Context().Err()).Err()) // after a reset: nothing written
		case <-release:
			ended <- nil
			_ = c.SendMsg([]byte("late"))
			c.Finish(nil)
		}
	}), nil)
	defer close(release)
	cc := dial(t, ts.addr)
	var resp []byte
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := cc.Invoke(ctx, "/t.S/Wait", &[]byte{1}, &resp); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("deadline: %v", err)
	}
	if err := <-ended; !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		t.Fatalf("handler context: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(ctxT(t, 5*time.Second))
	done := make(chan error, 1)
	go func() { done <- cc.Invoke(ctx2, "/t.S/Wait", &[]byte{1}, &resp) }()
	testkit.Within(t, 2*time.Second, "call in flight", func() bool { return ts.inflight() == 1 })
	cancel2()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancel: %v", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler context after cancel: %v", err)
	}
	if err := cc.Invoke(ctxT(t, 5*time.Second), "/t.S/Echo", []byte("ok"), &resp); err != nil || string(resp) != "ok" {
		t.Fatalf("after cancel: %v %q", err, resp)
	}
}

// inflight is the number of calls being served, over every connection.
func (s *Server) inflight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.mu.Lock()
		n += c.inflight
		c.mu.Unlock()
	}
	return n
}

// TestLargeMessages: 3 MiB each way over 64 KiB stream windows (the reply
// waits for the client's WINDOW_UPDATEs; the request needs ours); past
// the receive limit the call is RESOURCE_EXHAUSTED; a reply over the send
// limit too.
func TestLargeMessages(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.MaxRecvMsgSize, c.MaxSendMsgSize = 4<<20, 4<<20 })
	cc := dial(t, ts.addr, grpc.WithInitialWindowSize(65535), grpc.WithInitialConnWindowSize(65535))
	req := bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
	var resp []byte
	if err := cc.Invoke(ctxT(t, 10*time.Second), "/t.S/M", &req, &resp, grpc.MaxCallRecvMsgSize(8<<20), grpc.MaxCallSendMsgSize(8<<20)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, req) {
		t.Fatalf("reply of %d bytes differs", len(resp))
	}
	big := make([]byte, 5<<20)
	err := cc.Invoke(ctxT(t, 10*time.Second), "/t.S/M", &big, &resp, grpc.MaxCallSendMsgSize(8<<20))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than max") {
		t.Fatalf("over the receive limit: %v", err)
	}
	small := start(t, handlerFunc(func(c *Call) { c.Finish(c.SendMsg(make([]byte, 2<<20))) }), func(c *Config) { c.MaxSendMsgSize = 1 << 20 })
	err = dial(t, small.addr).Invoke(ctxT(t, 5*time.Second), "/t.S/M", &[]byte{1}, &resp)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the send limit: %v", err)
	}
	// The first connection still serves.
	if err := cc.Invoke(ctxT(t, 5*time.Second), "/t.S/M", []byte("x"), &resp); err != nil {
		t.Fatal(err)
	}
}

// TestGzip: a gzip-compressed request is decompressed for the handler
// and answered gzip-compressed (grpc-encoding gzip, the message flagged
// compressed on the wire), as grpc-go's server answers; a grpc-go client
// decodes it. An uncompressed request gets an uncompressed reply.
func TestGzip(t *testing.T) {
	ts := start(t, handlerFunc(echo), nil)
	cc := dial(t, ts.addr)
	req := bytes.Repeat([]byte("z"), 10000)
	var resp []byte
	if err := cc.Invoke(ctxT(t, 5*time.Second), "/t.S/M", &req, &resp, grpc.UseCompressor(gzip.Name)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, req) {
		t.Fatal("reply differs")
	}

	rc := rawDial(t, ts.addr)
	var zb bytes.Buffer
	zw, _ := encoding.GetCompressor(gzip.Name).Compress(&zb)
	_, _ = zw.Write(req)
	_ = zw.Close()
	for i, enc := range []string{"gzip", ""} {
		id := uint32(2*i + 1)
		kv := append([]string{}, grpcReq...)
		m := msg(req)
		if enc != "" {
			kv = append(kv, "grpc-encoding", enc)
			m = msg(zb.Bytes())
			m[0] = 1
		}
		rc.headers(id, false, kv...)
		_ = rc.fr.WriteData(id, true, m)
		var hdrEnc string
		var flag byte = 0xff
		var body []byte
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
				if h.StreamEnded() {
					break
				}
				for _, hf := range h.Fields {
					if hf.Name == "grpc-encoding" {
						hdrEnc = hf.Value
					}
				}
			}
			if d, ok := f.(*http2.DataFrame); ok && d.StreamID == id {
				if flag == 0xff {
					flag = d.Data()[0]
				}
				body = append(body, d.Data()...)
			}
		}
		if enc == "" {
			if flag != 0 || hdrEnc != "" || !bytes.Equal(body[5:], req) {
				t.Fatalf("identity request: reply flag %d grpc-encoding %q", flag, hdrEnc)
			}
			continue
		}
		if flag != 1 || hdrEnc != "gzip" || len(body) >= len(req) {
			t.Fatalf("gzip request: reply flag %d grpc-encoding %q, %d bytes", flag, hdrEnc, len(body))
		}
		r, err := encoding.GetCompressor(gzip.Name).Decompress(bytes.NewReader(body[5:]))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, req) {
			t.Fatalf("gzip reply decodes to %d bytes: %v", len(got), err)
		}
	}
}

// TestInFlightPerConnection: past MaxInFlightPerConn a call is
// RESOURCE_EXHAUSTED at once; another connection is not affected.
func TestInFlightPerConnection(t *testing.T) {
	release := make(chan struct{})
	ts := start(t, handlerFunc(func(c *Call) {
		if c.Method() == "/t.S/Hold" {
			<-release
		}
		echo(c)
	}), func(c *Config) { c.MaxInFlightPerConn = 1 })
	cc := dial(t, ts.addr)
	done := make(chan error, 1)
	var r1 []byte
	go func() { done <- cc.Invoke(ctxT(t, 5*time.Second), "/t.S/Hold", &[]byte{1}, &r1) }()
	testkit.Within(t, 2*time.Second, "call in flight", func() bool { return ts.inflight() == 1 })
	var resp []byte
	if err := cc.Invoke(ctxT(t, 5*time.Second), "/t.S/M", &[]byte{1}, &resp); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call on the connection: %v", err)
	}
	if err := dial(t, ts.addr).Invoke(ctxT(t, 5*time.Second), "/t.S/M", &[]byte{1}, &resp); err != nil {
		t.Fatalf("other connection: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestShutdownGraceful: Shutdown sends GOAWAY; the call in flight is
// answered, new connections are refused, Shutdown returns once it is.
func TestShutdownGraceful(t *testing.T) {
	release := make(chan struct{})
	ts := start(t, handlerFunc(func(c *Call) { <-release; echo(c) }), nil)
	cc := dial(t, ts.addr)
	done := make(chan error, 1)
	var resp []byte
	go func() { done <- cc.Invoke(ctxT(t, 5*time.Second), "/t.S/M", []byte("in flight"), &resp) }()
	testkit.Within(t, 2*time.Second, "call in flight", func() bool { return ts.inflight() == 1 })
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(ctxT(t, 5*time.Second)) }()
	testkit.Within(t, 2*time.Second, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned before the call was answered: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil || string(resp) != "in flight" {
		t.Fatalf("in-flight call: %v %q", err, resp)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// rawClient is an HTTP/2 client made of x/net/http2's Framer, for what
// grpc-go's client never sends.
type rawClient struct {
	t    testing.TB
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

func rawDial(t testing.TB, addr string) *rawClient {
	t.Helper()
	rc := rawDialNoPreface(t, addr)
	nc := rc.nc
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return rc
}

func (rc *rawClient) headers(id uint32, end bool, kv ...string) {
	rc.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	// A write error shows in what the test reads next.
	_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndHeaders: true, EndStream: end})
}

var grpcReq = []string{":method", "POST", ":scheme", "http", ":path", "/t.S/M", ":authority", "x", "content-type", "application/grpc", "te", "trailers"}

// reqWith is a copy of grpcReq with the named fields set (name, value
// pairs): a field grpcReq has gets the value, any other is appended.
func reqWith(set ...string) []string {
	h := append([]string{}, grpcReq...)
	for i := 0; i+1 < len(set); i += 2 {
		found := false
		for j := 0; j+1 < len(h); j += 2 {
			if h[j] == set[i] {
				h[j+1], found = set[i+1], true
			}
		}
		if !found {
			h = append(h, set[i], set[i+1])
		}
	}
	return h
}

func msg(b []byte) []byte {
	n := len(b)
	return append([]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, b...)
}

// until reads frames until one satisfies f (or the connection ends:
// returns nil and the read error).
func (rc *rawClient) until(f func(http2.Frame) bool) (http2.Frame, error) {
	return testkit.H2Until(rc.fr, f)
}

func (rc *rawClient) goAway() (http2.ErrCode, error) { return testkit.H2GoAway(rc.fr) }

// statusOf reads frames until stream id's END_STREAM headers and returns
// its :status and grpc-status and the fields.
func (rc *rawClient) statusOf(id uint32) (map[string]string, error) {
	f, err := rc.until(func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id && h.StreamEnded()
	})
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, hf := range f.(*http2.MetaHeadersFrame).Fields {
		m[hf.Name] = hf.Value
	}
	return m, nil
}

// wantOK makes a unary call on stream id and fails the test (what, the
// fields seen) unless it ends with grpc-status 0: the connection serves.
func (rc *rawClient) wantOK(id uint32, what string) {
	rc.t.Helper()
	rc.headers(id, false, grpcReq...)
	_ = rc.fr.WriteData(id, true, msg([]byte("ok")))
	if m, err := rc.statusOf(id); err != nil || m["grpc-status"] != "0" {
		rc.t.Fatalf("%s: %v %v", what, m, err)
	}
}

// TestRequestChecks: content-type, grpc-encoding, two messages on one
// stream and a truncated message are answered with a status (the
// handler sees only the two-message call, marked), the connection stays.
func TestRequestChecks(t *testing.T) {
	var sawMore atomic.Bool
	ts := start(t, handlerFunc(func(c *Call) {
		_, _, more := c.Message()
		sawMore.Store(more)
		echo(c)
	}), nil)
	rc := rawDial(t, ts.addr)
	bad := reqWith("content-type", "text/plain")
	rc.headers(1, true, bad...)
	if m, err := rc.statusOf(1); err != nil || m[":status"] != "415" || m["grpc-status"] != "3" {
		t.Fatalf("content-type: %v %v", m, err)
	}
	rc.headers(3, false, append(grpcReq, "grpc-encoding", "snappy")...)
	if m, err := rc.statusOf(3); err != nil || m["grpc-status"] != "12" || m["grpc-accept-encoding"] != "gzip" {
		t.Fatalf("encoding: %v %v", m, err)
	}
	rc.headers(5, false, grpcReq...)
	_ = rc.fr.WriteData(5, true, append(msg([]byte("a")), msg([]byte("b"))...))
	if m, err := rc.statusOf(5); err != nil || m["grpc-status"] != "13" || !sawMore.Load() {
		t.Fatalf("two messages: %v %v (handler saw more: %v)", m, err, sawMore.Load())
	}
	rc.headers(7, false, grpcReq...)
	_ = rc.fr.WriteData(7, true, msg([]byte("abc"))[:6])
	if m, err := rc.statusOf(7); err != nil || m["grpc-status"] != "13" || !strings.Contains(m["grpc-message"], "truncated") {
		t.Fatalf("truncated: %v %v", m, err)
	}
	rc.headers(9, false, append(grpcReq, "grpc-timeout", "bogus")...)
	if m, err := rc.statusOf(9); err != nil || m["grpc-status"] != "13" {
		t.Fatalf("grpc-timeout: %v %v", m, err)
	}
	rc.wantOK(11, "good call after the bad ones")
}

// TestHostile: stream id misuse, a rapid reset, a PING flood, a
// CONTINUATION flood and a flow-control violation each end the
// connection with GOAWAY (never a panic) and are counted.
func TestHostile(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	ts := start(t, echoOr(func(c *Call) {
		select {
		case <-c.Context().Done():
		case <-hold:
		}
		c.Finish(c.Context().Err())
	}), func(c *Config) { c.MaxResetsPerSecond, c.MaxControlPerSecond = 20, 20; c.MaxHeaderListSize = 8 << 10 })
	cases := []struct {
		name, reason string
		code         http2.ErrCode
		do           func(rc *rawClient)
	}{
		{"even stream id", ReasonProtocol, http2.ErrCodeProtocol, func(rc *rawClient) { rc.headers(2, true, grpcReq...) }},
		{"stream id going down", ReasonProtocol, http2.ErrCodeStreamClosed, func(rc *rawClient) {
			rc.headers(5, false, grpcReq...)
			rc.headers(3, false, grpcReq...)
		}},
		{"DATA on an idle stream", ReasonProtocol, http2.ErrCodeProtocol, func(rc *rawClient) { _ = rc.fr.WriteData(9, true, msg(nil)) }},
		{"rapid reset", ReasonRapidReset, http2.ErrCodeEnhanceYourCalm, func(rc *rawClient) {
			for id := uint32(1); id < 200; id += 2 {
				rc.headers(id, false, grpcReq...)
				_ = rc.fr.WriteData(id, true, msg([]byte("x")))
				_ = rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
		}},
		{"ping flood", ReasonPing, http2.ErrCodeEnhanceYourCalm, func(rc *rawClient) {
			for i := range 100 {
				_ = rc.fr.WritePing(false, [8]byte{byte(i)})
			}
		}},
		{"settings flood", ReasonControl, http2.ErrCodeEnhanceYourCalm, func(rc *rawClient) {
			for range 100 {
				_ = rc.fr.WriteSettings()
			}
		}},
		{"bad HPACK", ReasonHeaderBlock, http2.ErrCodeCompression, func(rc *rawClient) {
			_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x40, 0x7f}, EndHeaders: true})
		}},
		{"continuation flood", ReasonProtocol, http2.ErrCodeProtocol, func(rc *rawClient) {
			rc.hbuf.Reset()
			for i := range 64 { // 64 × 1 KiB fields, over the 8 KiB list limit
				_ = rc.henc.WriteField(hpack.HeaderField{Name: "x-f" + string(rune('a'+i%26)), Value: strings.Repeat("v", 1024)})
			}
			block := rc.hbuf.Bytes()
			_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1024], EndHeaders: false})
			for b := block[1024:]; len(b) > 0; {
				n := min(len(b), 1024)
				if rc.fr.WriteContinuation(1, false, b[:n]) != nil {
					return
				}
				b = b[n:]
			}
		}},
		{"oversized frame", ReasonProtocol, http2.ErrCodeFrameSize, func(rc *rawClient) {
			rc.headers(1, false, grpcReq...)
			_ = rc.fr.WriteRawFrame(http2.FrameData, 0, 1, make([]byte, 20000))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.ToFloat64(ts.errs.WithLabelValues("l", c.reason))
			rc := rawDial(t, ts.addr)
			go c.do(rc)
			code, err := rc.goAway()
			if err != nil {
				t.Fatalf("no GOAWAY: %v", err)
			}
			if code != c.code {
				t.Fatalf("GOAWAY %v, want %v", code, c.code)
			}
			if _, err := rc.until(func(http2.Frame) bool { return false }); err == nil {
				t.Fatal("connection not closed")
			}
			testkit.Within(t, 2*time.Second, "counted", func() bool {
				return testutil.ToFloat64(ts.errs.WithLabelValues("l", c.reason)) > before
			})
		})
	}
	// The server still serves.
	var resp []byte
	if err := dial(t, ts.addr).Invoke(ctxT(t, 5*time.Second), "/t.S/Echo", &[]byte{1}, &resp); err != nil {
		t.Fatal(err)
	}
}

// h2TLS is a listener's mTLS config offering ALPN h2, with the server
// and client certificates it was made from (files["client"] is one the
// listener accepts).
func h2TLS(t *testing.T) (*tls.Config, map[string]testpki.TLSFiles) {
	t.Helper()
	_, _, files := testkit.PKI(t, "server", "client")
	tc := testkit.TLSServer(t, files["server"], 0).Config().Clone()
	tc.NextProtos = []string{"h2"}
	return tc, files
}

// peerCN is the common name of the client certificate of ctx's peer (""
// without one) and the peer's address.
func peerCN(ctx context.Context) (string, net.Addr) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", nil
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return ti.State.PeerCertificates[0].Subject.CommonName, p.Addr
	}
	return "", p.Addr
}

// tlsEcho calls method with "tls" over mTLS with the client certificate
// client and checks the echo; it returns the TLS client.
func tlsEcho(t *testing.T, addr string, client testpki.TLSFiles, method string) *tlsconf.Client {
	t.Helper()
	cl := testkit.TLSClient(t, testkit.Config(client, "localhost"), 0)
	cc := dial(t, addr, grpc.WithTransportCredentials(cl.Credentials()))
	var resp []byte
	if err := cc.Invoke(ctxT(t, 5*time.Second), method, []byte("tls"), &resp); err != nil || string(resp) != "tls" {
		t.Fatalf("%v %q", err, resp)
	}
	return cl
}

// TestTLSALPN: over TLS the call works and the handler's peer carries the
// client certificate (mTLS); a client not offering ALPN h2 is refused.
func TestTLSALPN(t *testing.T) {
	tc, files := h2TLS(t)
	var cn atomic.Value
	ts := start(t, handlerFunc(func(c *Call) {
		if name, _ := peerCN(c.Context()); name != "" {
			cn.Store(name)
		}
		echo(c)
	}), func(c *Config) { c.TLS = tc })
	cl := tlsEcho(t, ts.addr, files["client"], "/t.S/M")
	if v, _ := cn.Load().(string); v != "client" {
		t.Fatalf("peer certificate CN %q", v)
	}
	before := testutil.ToFloat64(ts.errs.WithLabelValues("l", ReasonHandshake))
	ccfg, err := cl.Config(ctxT(t, 2*time.Second), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	ccfg = ccfg.Clone()
	ccfg.NextProtos = []string{"http/1.1"}
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tlsc := tlsClient(raw, ccfg)
	_ = tlsc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tlsc.Handshake(); err == nil {
		if _, err := tlsc.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection without ALPN h2 was served")
		}
	}
	testkit.Within(t, 2*time.Second, "counted", func() bool {
		return testutil.ToFloat64(ts.errs.WithLabelValues("l", ReasonHandshake)) > before
	})
}

// TestConcurrentCalls: many calls on a few connections, answered from
// worker goroutines concurrently (race detector), each gets its reply.
func TestConcurrentCalls(t *testing.T) {
	ts := start(t, handlerFunc(echo), nil)
	cc := dial(t, ts.addr)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := bytes.Repeat([]byte{byte(i)}, 100+i*500)
			var resp []byte
			for range 20 {
				if err := cc.Invoke(ctxT(t, 10*time.Second), "/t.S/M", &req, &resp); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(resp, req) {
					errs <- errors.New("reply mismatch")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func tlsClient(nc net.Conn, cfg *tls.Config) *tls.Conn { return tls.Client(nc, cfg) }

// TestRecvTimeoutAndIdle: a stream whose request does not arrive within
// RecvTimeout ends DEADLINE_EXCEEDED; a connection without calls for
// MaxConnectionIdle gets GOAWAY NO_ERROR and is closed.
func TestRecvTimeoutAndIdle(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) { c.RecvTimeout, c.MaxConnectionIdle = 200*time.Millisecond, 300*time.Millisecond })
	rc := rawDial(t, ts.addr)
	began := time.Now()
	rc.headers(1, false, grpcReq...)
	m, err := rc.statusOf(1)
	if err != nil || m["grpc-status"] != "4" {
		t.Fatalf("recv timeout: %v %v", m, err)
	}
	if d := time.Since(began); d < 200*time.Millisecond {
		t.Fatalf("answered after %v, before the receive timeout", d)
	}
	code, err := rc.goAway()
	if err != nil || code != http2.ErrCodeNo {
		t.Fatalf("idle: GOAWAY %v %v", code, err)
	}
	if _, err := rc.until(func(http2.Frame) bool { return false }); err == nil {
		t.Fatal("idle connection not closed")
	}
}

// TestPingAck: a PING is acknowledged with its payload even when no reply
// is written for its ack to ride with.
func TestPingAck(t *testing.T) {
	ts := start(t, handlerFunc(echo), nil)
	rc := rawDial(t, ts.addr)
	_ = rc.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f, err := rc.until(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() })
	if err != nil || f.(*http2.PingFrame).Data != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
		t.Fatalf("ping ack: %v %v", f, err)
	}
}

// TestIdleHoldsNoBuffer: behind a wrapping listener (connlimit's, as a
// grpc listener has), an idle plain-TCP connection gives its read buffer
// back once its call is answered, and serves the next call.
func TestIdleHoldsNoBuffer(t *testing.T) {
	s := New(Config{Name: "l", Handler: handlerFunc(echo), Blocking: true, IdleGrace: 100 * time.Millisecond})
	ln := connlimit.Listener(testkit.Listen(t, "127.0.0.1:0"), connlimit.Options{Name: "l", Max: 10})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	defer func() { s.Close(); <-served }()
	cc := dial(t, ln.Addr().String())
	var resp []byte
	for range 2 {
		if err := cc.Invoke(ctxT(t, 5*time.Second), "/t.S/M", []byte("a"), &resp); err != nil {
			t.Fatal(err)
		}
		testkit.Within(t, 2*time.Second, "no read buffer held", func() bool { return s.held.Load() == 0 })
	}
}
