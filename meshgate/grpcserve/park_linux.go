package grpcserve

import (
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An idle plain-TCP connection holds no goroutine (Linux). After
// Config.IdleGrace without frames the reading goroutine registers the
// socket with the server's parker and ends: a level-triggered,
// one-shot epoll registration (EPOLLIN|EPOLLRDHUP|EPOLLONESHOT) on an
// epoll instance of the server's own. That epoll descriptor is itself
// waited for on Go's netpoller (it is readable while an event is ready),
// by one goroutine per server, which drains the ready events with a
// non-blocking epoll_pwait (a raw syscall, like every socket read of
// this package: package rawio) and starts a goroutine per woken
// connection (idleWait, which reads the frames that woke it). The
// connection's own registration with Go's netpoller is untouched; the
// socket is in two epoll sets, which Linux allows.
//
// Ownership: a connection in the parker's table belongs to the parker.
// Whoever takes it out of the table (an event, or closeNow before it
// closes the socket) starts its idleWait, which reads the frames, or
// finds the socket closed and ends the connection as before. The socket
// is only removed from the epoll set while its descriptor is held
// (RawConn.Control), so a descriptor number reused by a later
// connection is never touched.

// parker waits for the parked connections of one server.
type parker struct {
	mu    sync.Mutex
	conns map[int32]*conn // parked, by socket descriptor
	ep    *os.File        // the epoll instance; nil: not started or failed
	epfd  int             // its descriptor (os.File.Fd would make it blocking)
	fail  bool            // epoll unavailable: connections park on goroutines
	done  bool            // server closed
	wg    sync.WaitGroup  // the waiting goroutine
}

// parkEvents: events drained per epoll_pwait.
const parkEvents = 64

// park hands the waiting of c (reading goroutine, about to end) to the
// parker; false: not possible (the caller waits on a goroutine).
func (p *parker) park(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.fail || !p.startLocked() {
		return false
	}
	ok := false
	err := c.raw.Control(func(fd uintptr) {
		p.conns[int32(fd)] = c
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
		if epollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) == nil {
			ok = true
		} else {
			delete(p.conns, int32(fd))
		}
	})
	if err != nil || !ok {
		return false
	}
	// closeNow sets closed before it looks for the connection here: one
	// that closed meanwhile is not left behind.
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		_ = c.raw.Control(func(fd uintptr) {
			delete(p.conns, int32(fd))
			_ = epollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		})
		return false
	}
	return true
}

// unpark takes c out of the parker, if it is there, and starts its
// idleWait (closeNow, before the socket is closed): true if it did.
func (p *parker) unpark(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ep == nil {
		return false
	}
	found := false
	_ = c.raw.Control(func(fd uintptr) {
		if p.conns[int32(fd)] != c {
			return
		}
		delete(p.conns, int32(fd))
		_ = epollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		found = true
	})
	if found {
		go c.idleWait()
	}
	return found
}

// close stops the waiting goroutine (Server.Close, after every
// connection was closed: none is parked any more).
func (p *parker) close() {
	p.mu.Lock()
	p.done = true
	ep := p.ep
	p.mu.Unlock()
	if ep != nil {
		_ = ep.Close()
	}
	p.wg.Wait()
}

// startLocked makes the epoll instance and its waiting goroutine on
// first use (p.mu held).
func (p *parker) startLocked() bool {
	if p.ep != nil {
		return true
	}
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err == nil {
		err = unix.SetNonblock(fd, true)
		if err != nil {
			_ = unix.Close(fd)
		}
	}
	if err != nil {
		p.fail = true
		return false
	}
	p.ep, p.epfd = os.NewFile(uintptr(fd), "grpcserve-parker"), fd
	rc, err := p.ep.SyscallConn()
	if err == nil {
		// Not on the netpoller (os.NewFile could not add it): a wait
		// would fail at once.
		err = p.ep.SetReadDeadline(time.Time{})
	}
	if err != nil {
		_ = p.ep.Close()
		p.ep, p.fail = nil, true
		return false
	}
	p.conns = map[int32]*conn{}
	p.wg.Add(1)
	go p.wait(rc)
	return true
}

// wait drains ready events whenever the epoll descriptor is readable,
// until it is closed.
func (p *parker) wait(rc syscall.RawConn) {
	defer p.wg.Done()
	var evs [parkEvents]unix.EpollEvent
	var woken []*conn
	for {
		err := rc.Read(func(fd uintptr) bool {
			for {
				n := epollWait(int(fd), evs[:])
				if n <= 0 {
					return false // nothing ready: wait for the next edge
				}
				p.mu.Lock()
				for _, ev := range evs[:n] {
					c := p.conns[ev.Fd]
					if c == nil {
						continue
					}
					delete(p.conns, ev.Fd)
					_ = c.raw.Control(func(sfd uintptr) {
						_ = epollCtl(int(fd), unix.EPOLL_CTL_DEL, int(sfd), nil)
					})
					woken = append(woken, c)
				}
				p.mu.Unlock()
				for i, c := range woken {
					go c.idleWait()
					woken[i] = nil
				}
				woken = woken[:0]
				if n < len(evs) {
					return false
				}
			}
		})
		if err != nil {
			p.abandon()
			return
		}
	}
}

// abandon hands every parked connection back to a goroutine of its own
// when the wait ends: the server closed (none is parked then), or an
// unexpected error of the epoll descriptor (connections then park on
// goroutines from now on).
func (p *parker) abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = true
	for fd, c := range p.conns {
		delete(p.conns, fd)
		if !p.done { // the epoll descriptor is still open
			_ = c.raw.Control(func(sfd uintptr) {
				_ = epollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(sfd), nil)
			})
		}
		go c.idleWait()
	}
}

// epollWait is a non-blocking epoll_pwait (raw syscall); 0 on EAGAIN or
// error.
func epollWait(epfd int, evs []unix.EpollEvent) int {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0
		}
		return int(n)
	}
}

// epollCtl is epoll_ctl (raw syscall).
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	if ev == nil {
		ev = &unix.EpollEvent{}
	}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
