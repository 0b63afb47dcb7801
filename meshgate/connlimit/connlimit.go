// Package connlimit bounds the downstream connections of a listener so one
// client cannot take the process down: a per-listener connection cap, a
// reserve of file descriptors kept for the admin endpoint, /healthz, gRPC
// listeners and upstream connections, a write timeout for clients that stop
// reading their socket, the meshgate_connections_rejected_total counter and
// rate-limited logging of refusals.
//
// The fd reserve is checked in O(1) from the accepted socket's descriptor
// number: the kernel hands out the lowest free descriptor, so a socket
// numbered n means descriptors 0..n-1 are all in use.
package connlimit

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/meshgate/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Rejection reasons (metric label values).
const (
	ReasonMaxConnections = "max_connections"
	ReasonFDReserve      = "fd_reserve"
)

// NewRejected returns meshgate_connections_rejected_total{listener,reason}
// registered on reg (the existing collector when already registered; a
// nil reg gives an unregistered counter).
func NewRejected(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_connections_rejected_total",
		Help: "Downstream connections closed at accept, by listener and reason (max_connections, fd_reserve).",
	}, []string{"listener", "reason"})
	cv, err := promreg.Adopt(reg, cv)
	if err != nil {
		return nil, err
	}
	return cv, nil
}

// fdLimit is the process's RLIMIT_NOFILE soft limit, read once.
var fdLimit = sync.OnceValue(func() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
})

// RaiseNOFILE raises the RLIMIT_NOFILE soft limit to the hard limit and
// returns the resulting soft limit. Call it once at start-up, before
// listeners accept.
func RaiseNOFILE() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// InReserve reports whether accepted connection c uses one of the last
// reserve descriptors below the soft RLIMIT_NOFILE (c may be a *tls.Conn
// or any conn exposing NetConn or syscall.Conn; other conns never are).
func InReserve(c net.Conn, reserve int) bool {
	if reserve <= 0 {
		return false
	}
	lim := fdLimit()
	if lim == 0 || lim > 1<<40 {
		return false
	}
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var fd uintptr
	if rc.Control(func(f uintptr) { fd = f }) != nil {
		return false
	}
	return uint64(fd)+uint64(reserve) >= lim
}

// LogLimiter logs at most one line per interval; the lines it drops are
// counted into the next one.
type LogLimiter struct {
	Log      *slog.Logger
	Interval time.Duration
	last     atomic.Int64
	dropped  atomic.Int64
}

// Warn logs msg unless a line went out less than Interval ago.
func (l *LogLimiter) Warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	iv := l.Interval
	if iv <= 0 {
		iv = time.Second
	}
	if now-last < int64(iv) || !l.last.CompareAndSwap(last, now) {
		l.dropped.Add(1)
		return
	}
	if d := l.dropped.Swap(0); d > 0 {
		args = append(args, "suppressed", d)
	}
	l.Log.Warn(msg, args...)
}

// Options configure a Listener.
type Options struct {
	// Name is the listener name (metric label, logs).
	Name string
	// Max caps open connections; 0 = no cap.
	Max int
	// FDReserve: see InReserve; 0 = none.
	FDReserve int
	// WriteTimeout bounds each write to a connection; 0 = none.
	WriteTimeout time.Duration
	// Rejected counts refusals; nil = not counted.
	Rejected *prometheus.CounterVec
	// Logger; nil discards.
	Logger *slog.Logger
}

// Listener wraps ln: connections past Max (or into the fd reserve) are
// closed as soon as they are accepted, counted and logged at most once a
// second; the others get a per-write deadline of WriteTimeout.
func Listener(ln net.Listener, o Options) net.Listener {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &listener{Listener: ln, o: o, log: LogLimiter{Log: o.Logger.With("listener", o.Name)}}
	if o.Rejected != nil {
		l.rejMax = o.Rejected.WithLabelValues(o.Name, ReasonMaxConnections)
		l.rejFD = o.Rejected.WithLabelValues(o.Name, ReasonFDReserve)
	}
	return l
}

type listener struct {
	net.Listener
	o             Options
	open          atomic.Int64
	log           LogLimiter
	rejMax, rejFD prometheus.Counter
}

// Open is the number of open connections accepted through l.
func (l *listener) Open() int { return int(l.open.Load()) }

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); l.o.Max > 0 && n > int64(l.o.Max) {
			l.open.Add(-1)
			l.refuse(c, ReasonMaxConnections, l.rejMax)
			continue
		}
		if InReserve(c, l.o.FDReserve) {
			l.open.Add(-1)
			l.refuse(c, ReasonFDReserve, l.rejFD)
			continue
		}
		return &conn{Conn: c, l: l}, nil
	}
}

func (l *listener) refuse(c net.Conn, reason string, ctr prometheus.Counter) {
	if ctr != nil {
		ctr.Inc() // before the close: whoever sees the close sees the count
	}
	_ = c.Close()
	l.log.Warn("connection refused", "reason", reason, "max_connections", l.o.Max)
}

// conn releases its slot once and arms a deadline before each write.
type conn struct {
	net.Conn
	l      *listener
	closed atomic.Bool
}

func (c *conn) Write(p []byte) (int, error) {
	if d := c.l.o.WriteTimeout; d > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// NetConn returns the accepted connection (for InReserve and TLS).
func (c *conn) NetConn() net.Conn { return c.Conn }
