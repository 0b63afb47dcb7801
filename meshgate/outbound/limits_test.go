package outbound_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/outbound"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// limitEnv is a grpc listener (the real grpc-go server with the outbound
// handler and its limits) in front of a real legacy server.
type limitEnv struct {
	addr    string // the grpc listener
	pool    *upstream.PrivatePool
	backend *legacy.Server
}

func newLimitEnv(t *testing.T, lim config.Limits, so legacy.ServerOptions, upstreamSlots int) *limitEnv {
	t.Helper()
	b, addr := testkit.Legacy(t, nil, nil, so)
	e := newLimitEnvAt(t, lim, addr, upstreamSlots)
	e.backend = b
	return e
}

func newLimitEnvAt(t *testing.T, lim config.Limits, backend string, upstreamSlots int) *limitEnv {
	t.Helper()
	m := admin.NewMetrics()
	u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, Endpoints: []string{backend},
		LB: config.LBRoundRobin, Connections: 1, MaxInFlight: upstreamSlots}
	p := pooltest.Private(t, u.WithDefaults(), m.Registry, 1, pooltest.FastBackoff())
	out, err := outbound.New(outbound.Options{Metrics: m, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Update(listener(defaultRoutes...), upstream.Set{Private: map[string]*upstream.PrivatePool{"legacy": p}}); err != nil {
		t.Fatal(err)
	}
	return &limitEnv{addr: testkit.Serve(t, grpc.NewServer(out.ServerOptions()...), nil), pool: p}
}

func (e *limitEnv) client(t *testing.T) *grpc.ClientConn {
	t.Helper()
	return testkit.Client(t, e.addr)
}

// h2 is a raw HTTP/2 client speaking gRPC framing by hand, so a test can do
// what grpc-go clients never do: ignore MAX_CONCURRENT_STREAMS, send
// headers without a message, never grant flow-control window.
type h2 struct {
	t   *testing.T
	nc  net.Conn
	wmu sync.Mutex
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder

	mu       sync.Mutex
	settings map[http2.SettingID]uint32
	ended    map[uint32]string // stream → "rst:<code>" or "status:<grpc-status>"
	data     int               // DATA bytes received
	done     chan struct{}
	gotSet   chan struct{}
}

func dialH2(t *testing.T, addr string) *h2 {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &h2{t: t, nc: nc, settings: map[http2.SettingID]uint32{}, ended: map[uint32]string{},
		done: make(chan struct{}), gotSet: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.hb)
	c.fr = http2.NewFramer(nc, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.readLoop()
	t.Cleanup(func() { nc.Close(); <-c.done })
	testkit.Receive(t, c.gotSet, 5*time.Second, "no SETTINGS from server")
	return c
}

func (c *h2) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			c.mu.Lock()
			_ = f.ForeachSetting(func(s http2.Setting) error { c.settings[s.ID] = s.Val; return nil })
			c.mu.Unlock()
			c.write(func() error { return c.fr.WriteSettingsAck() })
			select {
			case <-c.gotSet:
			default:
				close(c.gotSet)
			}
		case *http2.PingFrame:
			if !f.IsAck() { // a live client: answers pings, keeps the connection up
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.RSTStreamFrame:
			c.mu.Lock()
			c.ended[f.StreamID] = "rst:" + f.ErrCode.String()
			c.mu.Unlock()
		case *http2.MetaHeadersFrame:
			if v := f.PseudoValue("status"); v != "" && !f.StreamEnded() {
				continue
			}
			c.mu.Lock()
			for _, hf := range f.Fields {
				if hf.Name == "grpc-status" {
					c.ended[f.StreamID] = "status:" + hf.Value
				}
			}
			c.mu.Unlock()
		case *http2.DataFrame:
			c.mu.Lock()
			c.data += len(f.Data())
			c.mu.Unlock()
		}
	}
}

func (c *h2) write(fn func() error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = fn()
}

// open starts stream id calling method; with body != nil it also sends the
// message and ends the stream, otherwise only the headers.
func (c *h2) open(id uint32, method string, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hb.Reset()
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "x"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndHeaders: true}); err != nil {
		return err
	}
	if body == nil {
		return nil
	}
	msg := make([]byte, 5+len(body))
	binary.BigEndian.PutUint32(msg[1:], uint32(len(body)))
	copy(msg[5:], body)
	return c.fr.WriteData(id, true, msg)
}

func (c *h2) endedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ended)
}

func slowBody(ms uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, ms)
	return b
}

// 10,000 streams opened on one connection by a client ignoring the
// advertised limit take at most max_concurrent_streams upstream slots; an
// unrelated client is still served.
func TestStreamCapLeavesSecondClientServed(t *testing.T) {
	e := newLimitEnv(t, config.Limits{}, legacy.ServerOptions{}, 150) // default cap 100 < 150 slots
	c := dialH2(t, e.addr)
	c.mu.Lock()
	adv, ok := c.settings[http2.SettingMaxConcurrentStreams]
	c.mu.Unlock()
	if !ok || adv != config.DefaultMaxConcurrentStreams {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (present %v), want %d", adv, ok, config.DefaultMaxConcurrentStreams)
	}
	body := slowBody(3000)
	for i := range 10000 {
		if err := c.open(uint32(2*i+1), "/test.Echo/Slow", body); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	// The streams the server took are at the upstream.
	testkit.Within(t, 5*time.Second, "upstream calls in flight", func() bool { return e.pool.Stats().InFlight >= 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []byte
	if err := e.client(t).Invoke(ctx, "/test.Echo/Echo", []byte("hi"), &out); err != nil || string(out) != "hi" {
		t.Fatalf("second client: %v %q (upstream in flight %d)", err, out, e.pool.Stats().InFlight)
	}
	if n := e.pool.Stats().InFlight; n > 101 {
		t.Fatalf("one connection holds %d upstream slots, want <= 100", n)
	}
}

// A connection's calls in flight are capped below the upstream's total.
func TestPerConnectionInFlightCap(t *testing.T) {
	e := newLimitEnv(t, config.Limits{MaxInFlightPerConnection: 5}, legacy.ServerOptions{}, 100)
	cc := e.client(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codesSeen := map[codes.Code]int{}
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var out []byte
			err := cc.Invoke(ctx, "/test.Echo/Slow", slowBody(1000), &out)
			mu.Lock()
			codesSeen[status.Code(err)]++
			mu.Unlock()
		}()
	}
	// While those run, another connection is served.
	testkit.Within(t, 5*time.Second, "5 calls in flight", func() bool { return e.pool.Stats().InFlight >= 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []byte
	if err := e.client(t).Invoke(ctx, "/test.Echo/Echo", []byte("x"), &out); err != nil {
		t.Fatalf("other connection: %v", err)
	}
	wg.Wait()
	if codesSeen[codes.OK] != 5 || codesSeen[codes.ResourceExhausted] != 5 {
		t.Fatalf("codes %v, want 5 OK and 5 RESOURCE_EXHAUSTED", codesSeen)
	}
}

// Streams that send headers and never their message are ended by the
// receive timeout and their goroutines freed.
func TestHeaderOnlyStreamsEnded(t *testing.T) {
	e := newLimitEnv(t, config.Limits{RecvTimeout: 300 * time.Millisecond}, legacy.ServerOptions{}, 100)
	base := runtime.NumGoroutine()
	c := dialH2(t, e.addr)
	const n = 50
	for i := range n {
		if err := c.open(uint32(2*i+1), "/test.Echo/Echo", nil); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Within(t, 5*time.Second, "header-only streams to be ended", func() bool { return c.endedCount() == n })
	c.mu.Lock()
	for id, how := range c.ended {
		if how != "status:4" && !strings.HasPrefix(how, "rst:") {
			t.Errorf("stream %d ended with %s, want DEADLINE_EXCEEDED (4)", id, how)
		}
	}
	c.mu.Unlock()
	testkit.Within(t, 5*time.Second, "goroutines to return", func() bool { return runtime.NumGoroutine() <= base+10 })
	// The connection still serves a normal call.
	if err := c.open(uint32(2*n+1), "/test.Echo/Echo", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	testkit.Within(t, 5*time.Second, "a normal call", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.ended[uint32(2*n+1)] == "status:0"
	})
}

// bigReplyBackend is a private (MGP/1) backend answering every request
// with an n-byte body, and heartbeats.
func bigReplyBackend(t *testing.T, n int) string {
	t.Helper()
	ln := testkit.Listen(t, "127.0.0.1:0")
	body := bytes.Repeat([]byte("r"), n)
	testkit.ServeConns(t, ln, func(nc net.Conn) {
		c := mgp.New(0)
		rd := codec.NewReader(nc, c, 4096)
		var f codec.Frame
		var out []byte
		for rd.ReadFrame(&f) == nil {
			resp := codec.Frame{Cmd: f.Cmd, Seq: f.Seq, UIN: f.UIN, Flags: codec.FlagResponse | f.Flags&codec.FlagHeartbeat}
			if f.Flags&codec.FlagHeartbeat == 0 {
				resp.Body = body
			}
			out, _ = c.Append(out[:0], &resp)
			if _, err := nc.Write(out); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// A client that never grants flow-control window pins at most
// max_concurrent_streams replies, and the memory is released when its
// connection reaches max_connection_age + grace.
func TestNonReadingClientBoundedAndReleased(t *testing.T) {
	const (
		reply   = 1 << 20
		streams = 40
		maxStr  = 8
	)
	e := newLimitEnvAt(t, config.Limits{MaxConcurrentStreams: maxStr, MaxConnectionAge: 1500 * time.Millisecond,
		MaxConnectionAgeGrace: 500 * time.Millisecond}, bigReplyBackend(t, reply), 100)
	before := testkit.HeapInuse()
	c := dialH2(t, e.addr)
	for i := range streams {
		if err := c.open(uint32(2*i+1), "/test.Echo/Echo", []byte("q")); err != nil {
			t.Fatal(err)
		}
	}
	// Every stream is answered or refused.
	testkit.Within(t, 5*time.Second, "streams to be served or refused", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.data > 0 && len(c.ended) >= streams-maxStr
	})
	held := testkit.HeapInuse() - before
	// Each accepted stream pins its reply (~1 MiB) plus the request the
	// server received; bound: 3 × reply per stream cap, plus slack.
	if bound := uint64(maxStr*3*reply + 8<<20); held > bound {
		t.Fatalf("non-reading client pins %d MiB, want <= %d MiB", held>>20, bound>>20)
	}
	t.Logf("held by %d unread streams (cap %d): %d MiB", streams, maxStr, held>>20)
	testkit.Receive(t, c.done, 10*time.Second, "connection not closed by max_connection_age + grace")
	var after uint64
	testkit.Within(t, 5*time.Second, "memory release", func() bool {
		after = testkit.HeapInuse()
		return after < before+6<<20 && (after < before || after-before < held/2)
	})
	t.Logf("after close: %+d KiB vs before", (int64(after)-int64(before))>>10)
}

// Errors never echo unbounded input: a 1 MB x-mgp-uin, or a bad uin small
// enough to pass the header limit.
func TestBadMetadataNotEchoed(t *testing.T) {
	e := newLimitEnv(t, config.Limits{}, legacy.ServerOptions{}, 100)
	cc := e.client(t)
	for _, uin := range []string{strings.Repeat("9x", 1<<19), "not-a-number-" + strings.Repeat("z", 500)} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-mgp-uin", uin)
		var out []byte
		err := cc.Invoke(ctx, "/test.Echo/Echo", []byte("x"), &out)
		cancel()
		st := status.Convert(err)
		if err == nil || st.Code() == codes.OK {
			t.Fatalf("uin of %d bytes accepted", len(uin))
		}
		if len(st.Message()) > 512 || strings.Contains(st.Message(), uin[:40]) {
			t.Fatalf("%d-byte uin: message of %d bytes echoes the input: %.80q", len(uin), len(st.Message()), st.Message())
		}
	}
}

// Transport failures reach callers as fixed text, never the upstream's
// address or socket error.
func TestUpstreamAddressNotLeaked(t *testing.T) {
	e := newLimitEnv(t, config.Limits{}, legacy.ServerOptions{}, 100)
	cc := e.client(t)
	// A call in flight when the upstream connection drops fails with the
	// endpoint's address and socket error inside; later calls fail while
	// redials are refused.
	slow := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out []byte
		slow <- cc.Invoke(ctx, "/test.Echo/Slow", slowBody(3000), &out)
	}()
	testkit.Within(t, 5*time.Second, "the slow call to reach the upstream", func() bool { return e.pool.Stats().InFlight == 1 })
	e.backend.Close()
	var msgs []string
	if err := <-slow; err == nil {
		t.Fatal("slow call succeeded after the upstream closed")
	} else if msg := status.Convert(err).Message(); strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "privconn") {
		t.Fatalf("message leaks upstream details: %q", msg)
	}
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var out []byte
		err := cc.Invoke(ctx, "/test.Echo/Echo", []byte("x"), &out)
		cancel()
		if err == nil {
			continue
		}
		msg := status.Convert(err).Message()
		msgs = append(msgs, msg)
		if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "refused") || strings.Contains(msg, "dial") {
			t.Fatalf("message leaks upstream details: %q", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(msgs) == 0 {
		t.Fatal("no call failed after the upstream went away")
	}
}
