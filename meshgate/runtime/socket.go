package runtime

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/meshgate/meshgate/meshgate/rawio"
)

// socket is one bound TCP socket that successive generations of a listener
// share: a reload that rebuilds a listener on an unchanged address takes a
// new view of the live socket instead of closing and re-binding it, so an
// aborted reload never leaves the port closed and a committed one never
// refuses a connection. One goroutine accepts; every open view hands the
// accepted connections to its server. The socket closes when its last view
// does.
type socket struct {
	raw   net.Listener
	conns chan net.Conn
	stop  chan struct{} // closed when the last view closes
	done  chan struct{} // closed when the accept loop has exited

	mu   sync.Mutex
	refs int
}

// bindSocket listens on addr and starts accepting.
func bindSocket(addr string) (*socket, error) {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &socket{raw: rawio.Listener{Listener: raw}, conns: make(chan net.Conn), stop: make(chan struct{}), done: make(chan struct{})}
	go s.acceptLoop()
	return s, nil
}

func (s *socket) acceptLoop() {
	defer close(s.done)
	var backoff time.Duration
	for {
		c, err := s.raw.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Resource exhaustion (EMFILE...): back off and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		select {
		case s.conns <- c:
		case <-s.stop:
			_ = c.Close()
			return
		}
	}
}

// view returns a new net.Listener on the socket; closing it releases the
// socket (which closes with its last view).
func (s *socket) view() net.Listener {
	s.mu.Lock()
	s.refs++
	s.mu.Unlock()
	return &sockView{s: s, closed: make(chan struct{})}
}

func (s *socket) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if last {
		close(s.stop)
		_ = s.raw.Close()
		<-s.done
	}
}

// sockView is one server's net.Listener on a shared socket.
type sockView struct {
	s      *socket
	once   sync.Once
	closed chan struct{}
}

func (v *sockView) Accept() (net.Conn, error) {
	select {
	case <-v.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-v.s.conns:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.s.done:
		return nil, net.ErrClosed
	}
}

func (v *sockView) Close() error {
	v.once.Do(func() {
		close(v.closed)
		v.s.release()
	})
	return nil
}

func (v *sockView) Addr() net.Addr { return v.s.raw.Addr() }
