package grpcdirect

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const svc = "t.Svc"

// backend is a real grpc-go server on 127.0.0.1 with raw handlers.
type backend struct {
	addr string
	srv  *grpc.Server
}

func startBackend(t *testing.T, addr string, methods map[string]demo.Handler, opts ...grpc.ServerOption) *backend {
	return startBackendOn(t, addr, methods, opts...)
}

// startBackendTB serves methods on a free port for a benchmark.
func startBackendTB(tb testing.TB, methods map[string]demo.Handler) string {
	return startBackendOn(tb, "127.0.0.1:0", methods).addr
}

func startBackendOn(t testing.TB, addr string, methods map[string]demo.Handler, opts ...grpc.ServerOption) *backend {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // a just-closed port may need a moment to rebind
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(append(demo.ServerOptions(), opts...)...)
	demo.RegisterRaw(s, svc, methods)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return &backend{addr: ln.Addr().String(), srv: s}
}

func newEP(t *testing.T, cfg Config) *Endpoint {
	t.Helper()
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase, cfg.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	}
	e := New(cfg)
	t.Cleanup(e.Close)
	return e
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func echo(_ context.Context, b []byte) ([]byte, error) { return b, nil }

func TestUnaryRoundTrip(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo})
	e := newEP(t, Config{Addr: b.addr, Conns: 2})
	for i := range 50 {
		var resp rawcodec.Message
		var p peer.Peer
		req := bytes.Repeat([]byte{byte(i)}, i*37)
		if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", req, &resp, grpc.Peer(&p)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if !bytes.Equal(resp.Bytes(), req) {
			t.Fatalf("call %d: got %d bytes, want %d", i, resp.Len(), len(req))
		}
		resp.Free()
		if p.Addr == nil || p.Addr.String() != b.addr {
			t.Fatalf("peer %v, want %s", p.Addr, b.addr)
		}
	}
	// A *rawcodec.Message request (what the bridge sends).
	var req, resp rawcodec.Message
	req.SetBytes([]byte("hello"))
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", &req, &resp); err != nil || string(resp.Bytes()) != "hello" {
		t.Fatalf("message call: %q, %v", resp.Bytes(), err)
	}
	resp.Free()
	var unknown rawcodec.Message
	err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Nope", []byte("x"), &unknown)
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v", err)
	}
}

func TestMetadataBothWays(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Meta": func(ctx context.Context, _ []byte) ([]byte, error) {
		in, _ := metadata.FromIncomingContext(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs("h-plain", in.Get("x-plain")[0], "h-bin", in.Get("x-bin")[0]))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("t-plain", "after", "t-bin", "\x00\xff\x01"))
		return []byte(strings.Join(in.Get("x-multi"), ",")), nil
	}})
	e := newEP(t, Config{Addr: b.addr})
	ctx := metadata.NewOutgoingContext(ctxT(t, 5*time.Second), metadata.MD{
		"x-plain": {"v1"}, "X-Bin": {"\x00bin\xfe"}, "x-multi": {"a", "b"},
	})
	var hdr, trl metadata.MD
	var resp rawcodec.Message
	if err := e.Invoke(ctx, "/"+svc+"/Meta", []byte{}, &resp, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Bytes()); got != "a,b" {
		t.Errorf("multi-valued metadata: %q", got)
	}
	if hdr.Get("h-plain")[0] != "v1" || hdr.Get("h-bin")[0] != "\x00bin\xfe" {
		t.Errorf("header %v", hdr)
	}
	if len(hdr.Get("content-type")) != 1 {
		t.Errorf("header lacks content-type (grpc-go reports it): %v", hdr)
	}
	if trl.Get("t-plain")[0] != "after" || trl.Get("t-bin")[0] != "\x00\xff\x01" {
		t.Errorf("trailer %v", trl)
	}
}

// TestStatusCodes: every code with a message that needs percent-encoding
// and details, trailers-only and after headers, gives exactly what
// grpc-go's client gives.
func TestStatusCodes(t *testing.T) {
	const msg = "bad: 100% ünïcode\nline\t%zz"
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Fail": func(ctx context.Context, req []byte) ([]byte, error) {
		code := codes.Code(req[0])
		if req[1] == 1 {
			_ = grpc.SendHeader(ctx, metadata.Pairs("early", "yes")) // not trailers-only
		}
		_ = grpc.SetTrailer(ctx, metadata.Pairs("why", "test"))
		st, _ := status.New(code, msg).WithDetails(wrapperspb.String("detail"), wrapperspb.Int64(int64(code)))
		return nil, st.Err()
	}})
	e := newEP(t, Config{Addr: b.addr})
	cc, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for code := codes.Canceled; code <= codes.Unauthenticated; code++ {
		for _, early := range []byte{0, 1} {
			req := []byte{byte(code), early}
			var r1, r2 rawcodec.Message
			var h1, t1, h2, t2 metadata.MD
			want := cc.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Fail", req, &r1, grpc.Header(&h1), grpc.Trailer(&t1))
			got := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Fail", req, &r2, grpc.Header(&h2), grpc.Trailer(&t2))
			ws, _ := status.FromError(want)
			gs, ok := status.FromError(got)
			if !ok || !proto.Equal(ws.Proto(), gs.Proto()) {
				t.Errorf("code %v early %d: got %v, grpc-go %v", code, early, gs.Proto(), ws.Proto())
			}
			if gs.Message() != msg || len(gs.Details()) != 2 {
				t.Errorf("code %v: message %q details %v", code, gs.Message(), gs.Details())
			}
			if t2.Get("why")[0] != "test" || len(h1) != len(h2) || len(t1) != len(t2) {
				t.Errorf("code %v early %d: header %v / %v, trailer %v / %v", code, early, h2, h1, t2, t1)
			}
		}
	}
}

// stallBackend's Stall handler blocks until its context ends and reports
// that on ended.
func stallBackend(t *testing.T) (*backend, chan struct{}, chan error) {
	started, ended := make(chan struct{}, 16), make(chan error, 16)
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Stall": func(ctx context.Context, _ []byte) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("not cancelled")
		}
		return nil, ctx.Err()
	}})
	return b, started, ended
}

func TestDeadlineExceeded(t *testing.T) {
	b, _, ended := stallBackend(t)
	e := newEP(t, Config{Addr: b.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var resp rawcodec.Message
	start := time.Now()
	err := e.Invoke(ctx, "/"+svc+"/Stall", []byte("x"), &resp)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v", d)
	}
	select {
	case err := <-ended: // grpc-timeout or our RST_STREAM ended the handler
		if err == nil || err.Error() == "not cancelled" {
			t.Fatalf("server handler: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server handler still running")
	}
}

func TestCancellation(t *testing.T) {
	b, started, ended := stallBackend(t)
	e := newEP(t, Config{Addr: b.addr})
	ctx, cancel := context.WithCancel(context.Background()) // no deadline: only RST_STREAM can tell the server
	errc := make(chan error, 1)
	go func() {
		var resp rawcodec.Message
		errc <- e.Invoke(ctx, "/"+svc+"/Stall", []byte("x"), &resp)
	}()
	testkit.Receive(t, started, 5*time.Second, "call never reached the server")
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("got %v, want Canceled", err)
	}
	err := testkit.Receive(t, ended, 5*time.Second, "server never saw the cancellation")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("server handler ended with %v", err)
	}
}

// TestLargeMessages: 4 MiB each way needs the server's WINDOW_UPDATEs
// (its initial windows are 64 KiB) and ours.
func TestLargeMessages(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{
		"Echo": echo,
		"Big":  func(context.Context, []byte) ([]byte, error) { return make([]byte, 5<<20), nil },
	}, grpc.MaxRecvMsgSize(8<<20), grpc.MaxSendMsgSize(8<<20))
	e := newEP(t, Config{Addr: b.addr})
	req := make([]byte, 4<<20)
	for i := range req {
		req[i] = byte(i * 7)
	}
	var wg sync.WaitGroup
	for range 3 { // concurrent large calls share the connection window
		wg.Go(func() {
			var resp rawcodec.Message
			if err := e.Invoke(ctxT(t, 10*time.Second), "/"+svc+"/Echo", req, &resp); err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(resp.Bytes(), req) {
				t.Error("4 MiB echo differs")
			}
			resp.Free()
		})
	}
	wg.Wait()
	var resp rawcodec.Message
	err := e.Invoke(ctxT(t, 10*time.Second), "/"+svc+"/Big", []byte{}, &resp)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MiB reply over a 4 MiB limit: %v", err)
	}
	err = e.Invoke(ctxT(t, 10*time.Second), "/"+svc+"/Echo", make([]byte, 4<<20+1), &resp)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("request over the send limit: %v", err)
	}
	// The connection still works.
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("ok"), &resp); err != nil {
		t.Fatal(err)
	}
}

func TestMaxConcurrentStreams(t *testing.T) {
	var cur, peak atomic.Int32
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Slow": func(context.Context, []byte) ([]byte, error) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		cur.Add(-1)
		return []byte("ok"), nil
	}}, grpc.MaxConcurrentStreams(2))
	e := newEP(t, Config{Addr: b.addr, Conns: 1})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			var resp rawcodec.Message
			if err := e.Invoke(ctxT(t, 10*time.Second), "/"+svc+"/Slow", []byte("x"), &resp); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 || p < 1 {
		t.Fatalf("server saw %d concurrent streams, limit 2", p)
	}
}

// TestGracefulStop: GOAWAY mid-flight: calls in flight finish, the
// connection takes no new streams, and new calls fail Unavailable once the
// server is gone.
func TestGracefulStop(t *testing.T) {
	release := make(chan struct{})
	var in atomic.Int32
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Hold": func(context.Context, []byte) ([]byte, error) {
		in.Add(1)
		<-release
		return []byte("done"), nil
	}, "Echo": echo})
	e := newEP(t, Config{Addr: b.addr})
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			var resp rawcodec.Message
			err := e.Invoke(ctxT(t, 10*time.Second), "/"+svc+"/Hold", []byte("x"), &resp)
			if err == nil && string(resp.Bytes()) != "done" {
				err = errors.New("wrong reply")
			}
			errs <- err
		})
	}
	testkit.Within(t, 10*time.Second, "3 calls in flight", func() bool { return in.Load() == 3 })
	stopped := make(chan struct{})
	go func() { b.srv.GracefulStop(); close(stopped) }()
	testkit.Within(t, 10*time.Second, "the connection to see GOAWAY", func() bool {
		c := e.slots[0].cur.Load()
		return c == nil || !c.usable()
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("in-flight call: %v", err)
		}
	}
	<-stopped
	var resp rawcodec.Message
	testkit.Within(t, 10*time.Second, "new calls to fail Unavailable", func() bool {
		return status.Code(e.Invoke(ctxT(t, time.Second), "/"+svc+"/Echo", []byte("x"), &resp)) == codes.Unavailable
	})
}

// TestServerKilledReconnect: a killed server fails calls Unavailable; the
// endpoint reconnects once a server listens again.
func TestServerKilledReconnect(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo})
	e := newEP(t, Config{Addr: b.addr})
	var resp rawcodec.Message
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("x"), &resp); err != nil {
		t.Fatal(err)
	}
	b.srv.Stop()
	testkit.Within(t, 10*time.Second, "Unavailable after the kill", func() bool {
		err := e.Invoke(ctxT(t, time.Second), "/"+svc+"/Echo", []byte("x"), &resp)
		return status.Code(err) == codes.Unavailable
	})
	testkit.Within(t, 10*time.Second, "the endpoint to report not ready", func() bool { return !e.Ready(0) })
	startBackend(t, b.addr, map[string]demo.Handler{"Echo": echo})
	testkit.Within(t, 10*time.Second, "a call to succeed after the restart", func() bool {
		return e.Invoke(ctxT(t, time.Second), "/"+svc+"/Echo", []byte("x"), &resp) == nil
	})
	if !e.Ready(0) {
		t.Fatal("not ready after reconnect")
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, files, err := testpki.WriteSet(dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	f := files["localhost"]
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Echo": echo},
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	good := func(context.Context, string) (*tls.Config, error) {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}, nil
	}
	e := newEP(t, Config{Addr: b.addr, TLS: good})
	var resp rawcodec.Message
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("secure"), &resp); err != nil || string(resp.Bytes()) != "secure" {
		t.Fatalf("TLS call: %q %v", resp.Bytes(), err)
	}
	other, err := testpki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	bad := newEP(t, Config{Addr: b.addr, TLS: func(context.Context, string) (*tls.Config, error) {
		return &tls.Config{RootCAs: other.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}, nil
	}})
	testkit.Within(t, 10*time.Second, "the wrong-CA handshake to fail", func() bool { return bad.LastError() != nil })
	if !strings.Contains(bad.LastError().Error(), "certificate") {
		t.Errorf("error does not name the certificate problem: %v", bad.LastError())
	}
	err = bad.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("x"), &resp)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("wrong CA: %v", err)
	}
}

// TestGarbagePeer: a TCP server answering with garbage: calls fail
// Unavailable, nothing leaks (goleak in TestMain).
func TestGarbagePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\nthis is not http/2 at all........"))
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	e := New(Config{Addr: ln.Addr().String(), BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	testkit.Within(t, 10*time.Second, "a failed handshake", func() bool { return e.LastError() != nil && accepted.Load() >= 2 })
	var resp rawcodec.Message
	err = e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Echo", []byte("x"), &resp)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("garbage peer: %v", err)
	}
	e.Close()
}

// waitFor polls cond for up to 10s.
