package inbound

import (
	"fmt"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/push"
)

// Push (listeners[].push): the server keeps a push.Registry of which
// connection carries which uin, learned from the requests a connection
// sends, or only from a successful reply to the login cmd; pushes are
// written with Conn.Push, bounded per connection.

// pushConfig is the listener's push section in force.
type pushConfig struct {
	loginCmd   uint32
	queueBytes int
}

// pushState is one connection's part.
type pushState struct {
	b        *push.Binding // nil when the listener has no push section
	loginCmd uint32
	bound    int
}

// SetPush applies listeners[].push (nil: no push; connections accepted
// from now on are not tracked). The registry is created on first use and
// kept across reloads.
func (s *Server) SetPush(p *config.ListenerPush) {
	if p == nil {
		s.pushCfg.Store(nil)
		return
	}
	s.pushOnce.Do(func() {
		s.registry = push.NewRegistry(push.Limits{MaxConnsPerUIN: p.MaxConnsPerUIN, MaxUINsPerConn: p.MaxUINsPerConn})
	})
	s.registry.SetLimits(push.Limits{MaxConnsPerUIN: p.MaxConnsPerUIN, MaxUINsPerConn: p.MaxUINsPerConn})
	q := p.QueueBytes
	if q <= 0 {
		q = config.DefaultPushQueueBytes
	}
	s.pushCfg.Store(&pushConfig{loginCmd: p.LoginCmd, queueBytes: q})
}

// Registry returns the uin → connection registry (nil until SetPush with
// a push section).
func (s *Server) Registry() *push.Registry {
	if s.pushCfg.Load() == nil {
		return nil
	}
	return s.registry
}

// attachPush registers the connection with the registry when the listener
// tracks uins; detachPush unregisters it.
func (c *conn) attachPush() {
	pc := c.s.pushCfg.Load()
	if pc == nil || c.s.registry == nil {
		return
	}
	c.push = pushState{b: c.s.registry.Attach(pushConn{c}), loginCmd: pc.loginCmd, bound: pc.queueBytes}
}

func (c *conn) detachPush() {
	if c.push.b != nil {
		c.push.b.Close()
	}
}

// learnUIN binds the uin of an accepted request (not in login mode).
func (c *conn) learnUIN(uin uint64) {
	if c.push.b != nil && c.push.loginCmd == 0 {
		c.push.b.Learn(uin)
	}
}

// loginReply binds the uin of a successful reply to the login cmd.
func (c *conn) loginReply(f *codec.Frame) {
	if c.push.b != nil && c.push.loginCmd != 0 && f.Cmd == c.push.loginCmd && f.Result == codec.ResultOK && f.Flags&codec.FlagHeartbeat == 0 {
		c.push.b.Login(f.UIN)
	}
}

// pushConn is a conn as a push.Conn.
type pushConn struct{ c *conn }

// Push queues f behind the connection's writes without waiting for the
// socket: refused (push.ErrFull) when more than the listener's queue_bytes
// are waiting, push.ErrClosed once the connection failed. When no write is
// in progress a goroutine takes the flush, so the pusher never blocks.
func (p pushConn) Push(f *codec.Frame) error {
	c := p.c
	c.wmu.Lock()
	if c.werr != nil || c.ctx.Err() != nil {
		c.wmu.Unlock()
		return push.ErrClosed
	}
	if n := len(c.wbuf); n >= c.push.bound {
		c.wmu.Unlock()
		return fmt.Errorf("%w: %d bytes waiting (queue_bytes %d)", push.ErrFull, n, c.push.bound)
	}
	c.takeWbufLocked()
	b, err := c.s.codec.Append(c.wbuf, f)
	if err != nil {
		c.wmu.Unlock()
		return fmt.Errorf("inbound: push: %w", err)
	}
	c.wbuf = b
	if !c.flushing {
		c.flushing = true
		go func() {
			c.wmu.Lock()
			c.flushLocked()
			c.wmu.Unlock()
		}()
	}
	c.wmu.Unlock()
	return nil
}
