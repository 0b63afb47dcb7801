package e2e

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// pushingServer is a legacy server that answers heartbeats and can send
// PUSH frames on the connections MeshGate's pool opened to it.
type pushingServer struct {
	ln    net.Listener
	c     codec.Codec
	mu    sync.Mutex
	conns []net.Conn
}

func newPushingServer(t *testing.T) *pushingServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &pushingServer{ln: ln, c: mgp.New(0)}
	var wg sync.WaitGroup
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, nc)
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rd := codec.NewReader(nc, s.c, 4096)
				var f codec.Frame
				for rd.ReadFrame(&f) == nil {
					if f.Flags&codec.FlagHeartbeat != 0 && f.Flags&codec.FlagResponse == 0 {
						s.write(nc, &codec.Frame{Seq: f.Seq, Flags: codec.FlagHeartbeat | codec.FlagResponse})
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *pushingServer) write(nc net.Conn, f *codec.Frame) {
	b, _ := s.c.Append(nil, f)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = nc.Write(b)
}

// push sends f on the first connection; false when none is open yet.
func (s *pushingServer) push(f *codec.Frame) bool {
	s.mu.Lock()
	if len(s.conns) == 0 {
		s.mu.Unlock()
		return false
	}
	nc := s.conns[0]
	s.mu.Unlock()
	s.write(nc, f)
	return true
}

// TestUpstreamPushForwarded: PUSH frames a legacy server sends on MeshGate's
// pooled connections reach (a) the downstream connection of their uin
// (upstreams[].push.to: downstream) and (b) a gRPC method as a
// fire-and-forget call carrying uin and cmd (to: grpc). They were dropped
// by the pool's read loop before.
func TestUpstreamPushForwarded(t *testing.T) {
	game, chat := newPushingServer(t), newPushingServer(t)

	type sunk struct {
		body, uin, cmd string
	}
	sinkCh := make(chan sunk, 4)
	gs := demo.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		m, _ := grpc.MethodFromServerStream(ss)
		if m == "/test.Sink/OnPush" {
			sinkCh <- sunk{string(b), md.Get("x-mgp-uin")[0], md.Get("x-mgp-push-cmd")[0]}
		}
		return ss.SendMsg([]byte{})
	}), grpc.ForceServerCodecV2(rawcodec.Codec{}))
	be := harness.ServeGRPC(t, gs)

	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
readiness: none
listeners:
  - name: clients
    kind: private
    address: 127.0.0.1:0
    push: {trust_uin: true}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: backend}]
upstreams:
  - {name: backend, protocol: grpc, endpoints: [%q]}
  - {name: game, protocol: private, endpoints: [%q], connections: 1, push: {to: downstream}}
  - {name: chat, protocol: private, endpoints: [%q], connections: 1, push: {to: grpc, method: /test.Sink/OnPush, upstream: backend}}
`, be, game.ln.Addr().String(), chat.ln.Addr().String())
	mg := harness.StartMeshgate(t, cfg)
	harness.WaitHTTP200(t, 20*time.Second, mg.AdminURL("/healthz"))
	priv := mg.Addr("clients")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pushes := make(chan codec.Frame, 4)
	harness.WaitTCP(t, 10*time.Second, priv)
	cn, err := privconn.Dial(ctx, priv, mgp.New(0), privconn.Options{Heartbeat: -1, OnPush: func(f *codec.Frame) { pushes <- *privconn.Clone(f) }})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	if r, err := cn.Do(ctx, &codec.Frame{Cmd: 1, UIN: 77, Body: []byte("hello")}); err != nil || r.Result != 0 {
		t.Fatalf("login: %v %v", r, err)
	}

	harness.Eventually(t, 10*time.Second, "the game server's push reaches uin 77's connection", func() error {
		if !game.push(&codec.Frame{Cmd: 300, Seq: 9, UIN: 77, Flags: codec.FlagPush, Body: []byte("from game")}) {
			return fmt.Errorf("pool not connected yet")
		}
		select {
		case p := <-pushes:
			if p.Cmd != 300 || p.UIN != 77 || string(p.Body) != "from game" {
				t.Fatalf("push %+v", p)
			}
			return nil
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("no push yet")
		}
	})
	harness.Eventually(t, 10*time.Second, "the chat server's push reaches the gRPC sink", func() error {
		if !chat.push(&codec.Frame{Cmd: 301, Seq: 1, UIN: 5, Flags: codec.FlagPush, Body: []byte("from chat")}) {
			return fmt.Errorf("pool not connected yet")
		}
		select {
		case s := <-sinkCh:
			if s != (sunk{"from chat", "5", "301"}) {
				t.Fatalf("sink got %+v", s)
			}
			return nil
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("no call yet")
		}
	})
}
