//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/push"
	"github.com/meshgate/meshgate/meshgate/push/pushpb"
)

// fleet is many legacy client connections driven by one epoll loop: one
// goroutine for all of them (the race detector caps live goroutines at
// 8128, so a goroutine per connection cannot reach 10,000).
type fleet struct {
	ep    int
	c     codec.Codec
	mu    sync.Mutex
	conns map[int32]*fleetConn // by fd
	stop  chan struct{}
	done  chan struct{}
}

type fleetConn struct {
	fd      int
	uin     uint64
	buf     []byte
	loginOK bool
	pushes  []codec.Frame
	closed  bool
}

func newFleet(t *testing.T) *fleet {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	fl := &fleet{ep: ep, c: mgp.New(0), conns: map[int32]*fleetConn{}, stop: make(chan struct{}), done: make(chan struct{})}
	go fl.loop()
	t.Cleanup(func() {
		close(fl.stop)
		<-fl.done
		fl.mu.Lock()
		for _, c := range fl.conns {
			if !c.closed {
				syscall.Close(c.fd)
			}
		}
		fl.mu.Unlock()
		syscall.Close(ep)
	})
	return fl
}

// dial connects one client to addr (blocking connect, then non-blocking
// reads under epoll) and sends its login request.
func (fl *fleet) dial(addr *net.TCPAddr, uin uint64, loginCmd uint32) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return err
	}
	login, err := fl.c.Append(nil, &codec.Frame{Cmd: loginCmd, Seq: 1, UIN: uin, Body: []byte("login")})
	if err != nil {
		return err
	}
	if _, err := syscall.Write(fd, login); err != nil {
		syscall.Close(fd)
		return err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return err
	}
	fl.mu.Lock()
	fl.conns[int32(fd)] = &fleetConn{fd: fd, uin: uin}
	fl.mu.Unlock()
	return syscall.EpollCtl(fl.ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
}

func (fl *fleet) loop() {
	defer close(fl.done)
	events := make([]syscall.EpollEvent, 256)
	rd := make([]byte, 64<<10)
	for {
		select {
		case <-fl.stop:
			return
		default:
		}
		n, err := syscall.EpollWait(fl.ep, events, 50)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		for i := 0; i < n; i++ {
			fl.mu.Lock()
			c := fl.conns[events[i].Fd]
			if c != nil && !c.closed {
				fl.readLocked(c, rd)
			}
			fl.mu.Unlock()
		}
	}
}

// readLocked drains c's socket and decodes the frames in it.
func (fl *fleet) readLocked(c *fleetConn, rd []byte) {
	for {
		m, err := syscall.Read(c.fd, rd)
		if m <= 0 || err != nil {
			if m == 0 && err == nil { // peer closed
				c.closed = true
				syscall.Close(c.fd)
			}
			return
		}
		c.buf = append(c.buf, rd[:m]...)
		for {
			var f codec.Frame
			k, _, err := fl.c.Decode(c.buf, &f)
			if err != nil || k == 0 {
				break
			}
			switch {
			case f.Flags&codec.FlagPush != 0:
				g := f
				g.Body = append([]byte(nil), f.Body...)
				g.Ext = nil
				c.pushes = append(c.pushes, g)
			case f.Flags&codec.FlagResponse != 0 && f.Seq == 1 && f.Result == 0:
				c.loginOK = true
			}
			c.buf = c.buf[k:]
		}
	}
}

func (fl *fleet) count(pred func(*fleetConn) bool) int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	n := 0
	for _, c := range fl.conns {
		if pred(c) {
			n++
		}
	}
	return n
}

func (fl *fleet) close(uin uint64) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for _, c := range fl.conns {
		if c.uin == uin && !c.closed {
			c.closed = true
			syscall.Close(c.fd)
		}
	}
}

// TestPushToTenThousandClients: the real binary holds 10,000 legacy client
// connections, each bound to its uin by a successful login reply
// (listeners[].push.login_cmd); a grpc-go client pushes 3 messages to every
// user through meshgate.v1.Push/Send on the gRPC listener. Every client
// receives exactly its own pushes, in order; a user who disconnected gets
// NOT_FOUND; meshgate_push_total counts them. Before push support the push
// API did not exist and PUSH frames never reached a client.
func TestPushToTenThousandClients(t *testing.T) {
	const clients, perClient, loginCmd = 10000, 3, 1
	be := testkit.Demo(t)
	cfg := fmt.Sprintf(`listeners:
  - name: clients
    kind: private
    address: 127.0.0.1:0
    limits: {max_connections: 12000}
    push: {login_cmd: %d}
    routes: [{cmd: %d, method: /demo.Echo/Echo, upstream: demo}]
  - name: push-api
    kind: grpc
    address: 127.0.0.1:0
    push: {api: true}
    routes: []
upstreams:
  # 10,000 logins arrive at once: above the default circuit breaker (1024
  # in flight per upstream), which would answer the excess with result 6.
  - {name: demo, protocol: grpc, endpoints: [%q], resilience: {circuit_breaker: {max_requests: 20000, max_pending: 20000}}}
`, loginCmd, loginCmd, be)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))
	proc, priv, api := mg.Proc, mg.Addr("clients"), mg.Addr("push-api")
	rss := func() string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", proc.Cmd.Process.Pid))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
			}
		}
		return "?"
	}
	t.Logf("meshgate RSS before clients: %s", rss())

	fl := newFleet(t)
	paddr, _ := net.ResolveTCPAddr("tcp", priv)
	start := time.Now()
	for i := range clients {
		if err := fl.dial(paddr, uint64(i+1), loginCmd); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	harness.Eventually(t, 180*time.Second, "every login answered", func() error {
		if n := fl.count(func(c *fleetConn) bool { return c.loginOK }); n != clients {
			return fmt.Errorf("%d of %d logged in", n, clients)
		}
		return nil
	})
	t.Logf("%d clients connected and logged in in %v; meshgate RSS %s", clients, time.Since(start), rss())

	cc := testkit.Dial(t, api)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	const workers = 64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := w; u < clients; u += workers {
				uin := uint64(u + 1)
				for k := range perClient { // in order per user: each waits for the previous
					var resp pushpb.SendResponse
					err := cc.Invoke(ctx, push.MethodSend, &pushpb.SendRequest{Uin: uin, Cmd: 500 + uint32(k), Body: []byte(fmt.Sprintf("%d:%d", uin, k))}, &resp)
					if err != nil || resp.GetDelivered() != 1 {
						select {
						case errs <- fmt.Errorf("push uin %d #%d: delivered %d, %v", uin, k, resp.GetDelivered(), err):
						default:
						}
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	harness.Eventually(t, 120*time.Second, "every push received", func() error {
		if n := fl.count(func(c *fleetConn) bool { return len(c.pushes) >= perClient }); n != clients {
			return fmt.Errorf("%d of %d clients have all their pushes", n, clients)
		}
		return nil
	})
	t.Logf("%d pushes acknowledged in %v (%.0f/s); meshgate RSS %s", clients*perClient, elapsed, float64(clients*perClient)/elapsed.Seconds(), rss())
	fl.mu.Lock()
	for _, c := range fl.conns {
		if len(c.pushes) != perClient {
			t.Errorf("uin %d got %d pushes", c.uin, len(c.pushes))
			continue
		}
		for k, p := range c.pushes {
			if want := fmt.Sprintf("%d:%d", c.uin, k); p.UIN != c.uin || p.Cmd != 500+uint32(k) || string(p.Body) != want {
				t.Errorf("uin %d push %d: uin %d cmd %d body %q, want %q", c.uin, k, p.UIN, p.Cmd, p.Body, want)
			}
		}
	}
	fl.mu.Unlock()

	// A user who left: NOT_FOUND once the connection is gone.
	fl.close(1)
	harness.Eventually(t, 10*time.Second, "push to a disconnected user is NOT_FOUND", func() error {
		err := cc.Invoke(ctx, push.MethodSend, &pushpb.SendRequest{Uin: 1, Cmd: 9}, &pushpb.SendResponse{})
		if status.Code(err) != codes.NotFound {
			return fmt.Errorf("got %v", err)
		}
		return nil
	})
	body, err := mg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v := harness.MetricSum(body, "meshgate_push_total", harness.Labels{"cmd": "500", "listener": "push-api", "outcome": "ok"}); v != clients {
		t.Errorf("meshgate_push_total ok for cmd 500 = %v, want %d", v, clients)
	}
	if v := harness.MetricSum(body, "meshgate_push_total", harness.Labels{"cmd": "9", "listener": "push-api", "outcome": "not_found"}); v < 1 {
		t.Errorf("meshgate_push_total not_found = %v", v)
	}
}

// pushingServer is a legacy server that answers heartbeats and can send
// PUSH frames on the connections MeshGate's pool opened to it.
type pushingServer struct {
	ln    net.Listener
	c     codec.Codec
	mu    sync.Mutex
	conns []net.Conn
}

func newPushingServer(t *testing.T) *pushingServer {
	s := &pushingServer{ln: testkit.Listen(t, "127.0.0.1:0"), c: mgp.New(0)}
	testkit.ServeConns(t, s.ln, func(nc net.Conn) {
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		rd := codec.NewReader(nc, s.c, 4096)
		var f codec.Frame
		for rd.ReadFrame(&f) == nil {
			if f.Flags&codec.FlagHeartbeat != 0 && f.Flags&codec.FlagResponse == 0 {
				s.write(nc, &codec.Frame{Seq: f.Seq, Flags: codec.FlagHeartbeat | codec.FlagResponse})
			}
		}
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

// trustUINClients is the private listener "clients" whose connections
// are bound to the uin their frames carry (push.trust_uin), routing cmd 1
// to the upstream "backend".
const trustUINClients = `  - name: clients
    kind: private
    address: 127.0.0.1:0
    push: {trust_uin: true}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: backend}]
`

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
	be := testkit.AnyMethod(t, func(ctx context.Context, b []byte) ([]byte, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if m, _ := grpc.Method(ctx); m == "/test.Sink/OnPush" {
			sinkCh <- sunk{string(b), md.Get("x-mgp-uin")[0], md.Get("x-mgp-push-cmd")[0]}
		}
		return []byte{}, nil
	})

	cfg := fmt.Sprintf(`readiness: none
listeners:
`+trustUINClients+`upstreams:
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
