package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/demo"
)

// grpcService starts a grpc-go service e2e.Echo on 127.0.0.1 whose methods A and B reply
// "<name>/<method>:<request body>", so a reply says which service and which route served it.
func grpcService(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(demo.ServerOptions()...)
	reply := func(m string) demo.Handler {
		return func(_ context.Context, b []byte) ([]byte, error) {
			return fmt.Appendf(nil, "%s/%s:%s", name, m, b), nil
		}
	}
	demo.RegisterRaw(gs, "e2e.Echo", map[string]demo.Handler{"A": reply("A"), "B": reply("B")})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// mgpCall is a legacy MGP/1 client: one connection, one request frame, one response frame.
func mgpCall(ctx context.Context, addr string, cmd uint32, uin uint64, body string) (*codec.Frame, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c := mgp.New(0)
	req, err := c.Append(nil, &codec.Frame{Cmd: cmd, Seq: 7, UIN: uin, Body: []byte(body)})
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for {
		var f codec.Frame
		n, _, err := c.Decode(buf, &f)
		if err != nil {
			return nil, fmt.Errorf("decode reply: %w", err)
		}
		if n > 0 {
			if f.Seq != 7 || !f.Flags.Has(codec.FlagResponse) {
				return nil, fmt.Errorf("unexpected frame cmd=%d seq=%d flags=%v", f.Cmd, f.Seq, f.Flags)
			}
			return &f, nil
		}
		m, err := conn.Read(tmp)
		if m > 0 {
			buf = append(buf, tmp[:m]...)
		}
		if err != nil {
			return nil, fmt.Errorf("read reply: %w", err)
		}
	}
}

// eventuallyReply sends a request every 200ms until check accepts the reply, failing the
// test with the last error after timeout.
func eventuallyReply(t *testing.T, timeout time.Duration, what, addr string, cmd uint32, check func(*codec.Frame) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		f, err := mgpCall(ctx, addr, cmd, 42, "hello")
		cancel()
		if err == nil {
			err = check(f)
		}
		if err == nil {
			return
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, last)
}

func bodyPrefix(prefix string) func(*codec.Frame) error {
	return func(f *codec.Frame) error {
		if f.Result != 0 || !strings.HasPrefix(string(f.Body), prefix) {
			msg, _ := f.ExtValue(codec.ExtErrorMsg)
			return fmt.Errorf("reply result=%d body=%q message=%q, want body %q…", f.Result, f.Body, msg, prefix)
		}
		return nil
	}
}
