package inbound

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// newStreamEnv serves a private listener whose stream routes go to a real
// grpc-go server: cmd 30 → /test.Stream/Echo (bidi: every message back),
// cmd 31 → /test.Stream/Hold (reads nothing until the call ends), cmd 100
// unary echo.
func newStreamEnv(t *testing.T) *env {
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		m, _ := grpc.MethodFromServerStream(ss)
		switch m {
		case "/test.Stream/Hold":
			<-ss.Context().Done()
			return ss.Context().Err()
		default: // echo, unary or stream
			for {
				var b []byte
				if err := ss.RecvMsg(&b); err != nil {
					return nil
				}
				if err := ss.SendMsg(&b); err != nil {
					return err
				}
			}
		}
	}))
	pool := pooltest.GRPC(t, config.Upstream{Name: "s", Protocol: "grpc", Endpoints: []string{testkit.Serve(t, gs, nil)}, LB: "round_robin", Connections: 1}, grpcpool.Options{})
	routes := []Route{
		{Cmd: 30, Method: "/test.Stream/Echo", Upstream: pool, Timeout: 10 * time.Second, Stream: config.StreamBidi},
		{Cmd: 31, Method: "/test.Stream/Hold", Upstream: pool, Timeout: 10 * time.Second, Stream: config.StreamClient},
		{Cmd: cmdEcho, Method: "/test.Stream/Unary", Upstream: pool, Timeout: 10 * time.Second},
	}
	c := mgp.New(0)
	srv := New(Options{Name: "priv", Codec: c, DrainQuiet: 100 * time.Millisecond}, NewTable("priv", routes, Limits{MaxInFlight: 16, IdleTimeout: time.Minute, ReadTimeout: 10 * time.Second}, nil, nil))
	e := &env{t: t, srv: srv, codec: c}
	e.serve(t)
	return e
}

// frames collects the frames of seq until the final one (MORE clear).
func exchange(t *testing.T, cl *client, seq uint32) []codec.Frame {
	t.Helper()
	var out []codec.Frame
	for {
		f := cl.next(fmt.Sprintf("the end of exchange %d (%d frames)", seq, len(out)))
		if f.Seq != seq || f.Flags&codec.FlagResponse == 0 {
			continue
		}
		out = append(out, f)
		if f.Flags&codec.FlagMore == 0 {
			return out
		}
	}
}

func send(cl *client, f codec.Frame) {
	b, err := cl.c.Append(nil, &f)
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.write(b)
}

// TestStreamBidiExchange: MORE request frames become stream messages of a
// gRPC call; each response comes back as a MORE reply frame with the
// client's seq; the final frame carries result 0 and no body.
func TestStreamBidiExchange(t *testing.T) {
	e := newStreamEnv(t)
	cl := e.dial()
	send(cl, codec.Frame{Cmd: 30, Seq: 7, UIN: 1, Flags: codec.FlagMore, Body: []byte("a")})
	send(cl, codec.Frame{Cmd: 30, Seq: 7, UIN: 1, Flags: codec.FlagMore, Body: []byte("b")})
	send(cl, codec.Frame{Cmd: 30, Seq: 7, UIN: 1})
	fs := exchange(t, cl, 7)
	if len(fs) != 3 || string(fs[0].Body) != "a" || string(fs[1].Body) != "b" || fs[0].Flags != codec.FlagResponse|codec.FlagMore {
		t.Fatalf("frames %+v", fs)
	}
	if last := fs[2]; last.Result != 0 || len(last.Body) != 0 || last.Flags != codec.FlagResponse {
		t.Fatalf("final %+v", last)
	}
}

// TestStreamOverflowAndCancelKeepConnection: an exchange whose upstream
// reads nothing fills gRPC's window and then its bounded buffer: it ends
// with result 6; a CANCEL ends another with result 11; a unary request on
// the same connection is answered afterwards.
func TestStreamOverflowAndCancelKeepConnection(t *testing.T) {
	e := newStreamEnv(t)
	cl := e.dial()
	body := make([]byte, 4096)
	for range 200 { // 800 KiB: more than the HTTP/2 window plus 64 buffered messages
		send(cl, codec.Frame{Cmd: 31, Seq: 1, Flags: codec.FlagMore, Body: body})
	}
	if fs := exchange(t, cl, 1); fs[len(fs)-1].Result != codec.ResultOverloaded {
		t.Fatalf("overflowed exchange ended with result %d", fs[len(fs)-1].Result)
	}
	send(cl, codec.Frame{Cmd: 31, Seq: 2, Flags: codec.FlagMore, Body: []byte("x")})
	send(cl, codec.Frame{Cmd: 31, Seq: 2, Flags: codec.FlagCancel})
	if fs := exchange(t, cl, 2); fs[len(fs)-1].Result != codec.ResultCancelled {
		t.Fatalf("cancelled exchange ended with result %d", fs[len(fs)-1].Result)
	}
	if r, ok := cl.call(codec.Frame{Cmd: cmdEcho, Seq: 3, Body: []byte("still here")}); !ok || r.Result != 0 || string(r.Body) != "still here" {
		t.Fatalf("unary after the streams: %+v", r)
	}
}
