package testkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

// Every helper's cleanup leaves no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLoad: the callers run until stop, successes and failures are
// counted, the first errors kept (at most five).
func TestLoad(t *testing.T) {
	stop := make(chan struct{})
	var n atomic.Int64
	wait := Load(3, stop, func() error {
		if n.Add(1)%2 == 0 {
			return errors.New("even")
		}
		return nil
	})
	Within(t, 5*time.Second, "calls", func() bool { return n.Load() > 100 })
	close(stop)
	ok, failed, errs := wait()
	if ok == 0 || failed == 0 || ok+failed != n.Load() || len(errs) != 5 {
		t.Fatalf("ok=%d failed=%d calls=%d errs=%v", ok, failed, n.Load(), errs)
	}
}

// TestServeConnsAndListen: a served connection echoes, and a port is
// bound again right after its listener closed (Listen retries).
func TestServeConnsAndListen(t *testing.T) {
	t.Run("serve", func(t *testing.T) {
		ln := Listen(t, "127.0.0.1:0")
		ServeConns(t, ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("%q %v", buf, err)
		}
	})
	addr := FreeAddr(t)
	first := Listen(t, addr)
	_ = first.Close()
	if got := Listen(t, addr).Addr().String(); got != addr {
		t.Fatalf("rebound %s, want %s", got, addr)
	}
}

// TestStubAndLegacy: the stub serves demo.Echo and its raw services to
// Client; Legacy answers an MGP/1 echo with Addr set on return.
func TestStubAndLegacy(t *testing.T) {
	ctx := Context(t, 5*time.Second)
	cc := Client(t, Who(t, "me"))
	for method, want := range map[string]string{demo.MethodEcho: "ping", "/test.Svc/Who": "me"} {
		var out []byte
		if err := cc.Invoke(ctx, method, []byte("ping"), &out); err != nil || string(out) != want {
			t.Fatalf("%s: %q %v", method, out, err)
		}
	}
	s, addr := Legacy(t, nil, nil, legacy.ServerOptions{})
	if s.Addr().String() != addr {
		t.Fatalf("Addr %v, want %s", s.Addr(), addr)
	}
	if r, err := LegacyClient(t, addr, legacy.ClientOptions{}).Call(ctx, legacy.CmdEcho, 1, []byte("x"), nil); err != nil || string(r.Body) != "x" {
		t.Fatalf("%+v %v", r, err)
	}
}

// TestAnyMethod: the handler answers a method no service registers, sees
// its name and metadata, and sets header, trailer and status.
func TestAnyMethod(t *testing.T) {
	ctx := Context(t, 5*time.Second)
	cc := Client(t, AnyMethod(t, func(ctx context.Context, req []byte) ([]byte, error) {
		m, _ := grpc.Method(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs("h", "1"))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("t", "2"))
		if string(req) == "fail" {
			return nil, status.Error(codes.Aborted, "failed")
		}
		return []byte(m + " " + strings.Join(metadata.ValueFromIncomingContext(ctx, "k"), ",") + " " + string(req)), nil
	}))
	var out []byte
	var hdr, trl metadata.MD
	ctx = metadata.AppendToOutgoingContext(ctx, "k", "v")
	if err := cc.Invoke(ctx, "/any.Svc/Do", []byte("x"), &out, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil || string(out) != "/any.Svc/Do v x" {
		t.Fatalf("%q %v", out, err)
	}
	if h, tr := hdr.Get("h"), trl.Get("t"); len(h) != 1 || h[0] != "1" || len(tr) != 1 || tr[0] != "2" {
		t.Fatalf("header %v trailer %v", hdr, trl)
	}
	if err := cc.Invoke(ctx, "/any.Svc/Do", []byte("fail"), &out); status.Code(err) != codes.Aborted {
		t.Fatalf("error %v, want Aborted", err)
	}
}

// TestRotateServesNewCertificate: after Rotate a TLSServer on the same
// files presents the new leaf (WaitServes), and KeepCopy kept the old.
func TestRotateServesNewCertificate(t *testing.T) {
	dir, _, files := PKI(t, "server", "client")
	old := KeepCopy(t, files["client"])
	srv := TLSServer(t, files["server"], 10*time.Millisecond)
	ln := Listen(t, "127.0.0.1:0")
	ServeConns(t, ln, func(c net.Conn) {
		tc := tls.Server(c, srv.Config())
		_ = tc.Handshake()
		_, _ = io.Copy(io.Discard, tc)
	})
	leaves := Rotate(t, dir, "ca-two", "server", "client")
	WaitServes(t, Context(t, 5*time.Second), files["client"], ln.Addr().String(), leaves["server"].Cert.SerialNumber, 10*time.Millisecond)
	kept, err := os.ReadFile(old.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	now, err := os.ReadFile(files["client"].CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(kept, now) {
		t.Fatal("the kept copy rotated too")
	}
}

// TestAwait: Await reports a condition that comes to hold, and gives up
// (false) on one that never does once d has passed.
func TestAwait(t *testing.T) {
	var n atomic.Int32
	if !Await(time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatal("Await gave up on a condition that held at the third poll")
	}
	start := time.Now()
	if Await(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("Await reported a condition that never held")
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("Await gave up after %v, before its 50ms", el)
	}
}
