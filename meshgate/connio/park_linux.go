package connio

import (
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ParkSupported reports whether a Parker can hold connections here.
const ParkSupported = true

// Parker holds idle plain-TCP connections without a goroutine each
// (Linux): Park registers the socket, level-triggered and one-shot
// (EPOLLIN|EPOLLRDHUP|EPOLLONESHOT), with an epoll instance of the
// parker's own. That epoll descriptor is itself waited for on Go's
// netpoller (it is readable while an event is ready) by one goroutine
// per parker, which drains the ready events with a non-blocking
// epoll_pwait (a raw syscall: package rawio) and starts a goroutine per
// woken connection (Parked's wake, which reads what woke it). The
// connection's own registration with Go's netpoller is untouched; the
// socket is in two epoll sets, which Linux allows. One Parker serves one
// listener or server; its zero value is ready, the epoll instance and
// the waiting goroutine are made on the first Park.
//
// Ownership: a connection in the parker's table belongs to the parker.
// Whoever takes it out of the table (an event, Unpark, Close or a
// failure of the epoll wait) starts its wake, exactly once; the owner
// then finds the socket readable, closed, or (a spurious wake) neither.
// Before the owner closes the socket of a parked connection it calls
// Unpark. The socket is only added to or removed from the epoll set
// while its descriptor is held (RawConn.Control), so a descriptor number
// reused by a later connection is never touched; a connection whose
// socket was closed while parked (its registration then ends with the
// descriptor) is woken by Unpark without an epoll_ctl, or when its
// descriptor number is parked again.
//
// When epoll is unavailable, or its wait fails, Park returns false (and
// connections parked at that moment are woken): the owner waits on a
// goroutine as it would without a parker.
type Parker struct {
	mu    sync.Mutex
	conns map[int32]*Parked // parked, by socket descriptor
	ep    *os.File          // the epoll instance; nil: not started or failed
	epfd  int               // its descriptor (os.File.Fd would make it blocking)
	fail  bool              // epoll unavailable: Park refuses
	done  bool              // closed
	wg    sync.WaitGroup    // the waiting goroutine

	// epoll_ctl of a socket under its RawConn.Control (p.mu held):
	// ctlFn is p.ctl bound once, ctlAdd and ctlPC its arguments, ctlOK
	// its result (no closure allocated per park or wake-up).
	ctlFn  func(uintptr)
	ctlAdd bool
	ctlPC  *Parked
	ctlOK  bool
}

// parkEvents: events drained per epoll_pwait.
const parkEvents = 64

// Park hands the wait for pc's socket to become readable (or to end) to
// p; false: not possible (the caller waits on a goroutine). From true
// on, pc belongs to the parker until it is taken out.
func (p *Parker) Park(pc *Parked) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.fail || !p.startLocked() {
		return false
	}
	return p.control(pc, true)
}

// control runs ctl on pc's descriptor (p.mu held): add registers it
// (true when done), else it is removed from the epoll set.
func (p *Parker) control(pc *Parked, add bool) bool {
	p.ctlAdd, p.ctlPC, p.ctlOK = add, pc, false
	err := pc.raw.Control(p.ctlFn)
	p.ctlPC = nil
	return err == nil && p.ctlOK
}

// ctl is the RawConn.Control callback of control.
func (p *Parker) ctl(fd uintptr) {
	if !p.ctlAdd {
		_ = epollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		return
	}
	pc := p.ctlPC
	if old := p.conns[int32(fd)]; old != nil && old != pc {
		// The descriptor number is reused: old's socket was closed
		// while parked (its registration ended with it).
		delete(p.conns, int32(fd))
		go old.wake()
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
	if epollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) == nil {
		p.conns[int32(fd)] = pc
		pc.fd = int32(fd)
		p.ctlOK = true
	}
}

// Unpark takes pc out of the parker, if it is there, and starts its
// wake: true if it did (call it before closing a parked socket).
func (p *Parker) Unpark(pc *Parked) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil || p.conns[pc.fd] != pc {
		return false
	}
	delete(p.conns, pc.fd)
	if !p.done {
		// Not after a close of the socket (Control fails then): the
		// descriptor may be another's.
		p.control(pc, false)
	}
	go pc.wake()
	return true
}

// Holds reports whether pc is parked in p (tests, stats).
func (p *Parker) Holds(pc *Parked) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns != nil && p.conns[pc.fd] == pc
}

// Len is the number of parked connections.
func (p *Parker) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the waiting goroutine and wakes every connection still
// parked (normally none: the owner closes its connections first, each
// unparked); Park refuses from then on.
func (p *Parker) Close() {
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
func (p *Parker) startLocked() bool {
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
	p.ep, p.epfd = os.NewFile(uintptr(fd), "connio-parker"), fd
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
	p.conns = map[int32]*Parked{}
	p.ctlFn = p.ctl
	p.wg.Add(1)
	go p.wait(rc)
	return true
}

// wait drains ready events whenever the epoll descriptor is readable,
// until it is closed.
func (p *Parker) wait(rc syscall.RawConn) {
	defer p.wg.Done()
	var evs [parkEvents]unix.EpollEvent
	var woken []*Parked
	for {
		err := rc.Read(func(fd uintptr) bool {
			for {
				n := epollWait(int(fd), evs[:])
				if n <= 0 {
					return false // nothing ready: wait for the next edge
				}
				p.mu.Lock()
				for _, ev := range evs[:n] {
					pc := p.conns[ev.Fd]
					if pc == nil {
						continue
					}
					delete(p.conns, ev.Fd)
					p.control(pc, false)
					woken = append(woken, pc)
				}
				p.mu.Unlock()
				for i, pc := range woken {
					go pc.wake()
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
// when the wait ends: the parker closed, or an unexpected error of the
// epoll descriptor (Park then refuses from now on).
func (p *Parker) abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = true
	for fd, pc := range p.conns {
		delete(p.conns, fd)
		if !p.done { // the epoll descriptor is still open
			p.control(pc, false)
		}
		go pc.wake()
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
