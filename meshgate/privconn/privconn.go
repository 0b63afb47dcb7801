// Package privconn is a multiplexed, pipelined client connection for any
// private-protocol codec over a net.Conn.
//
// A Conn carries many requests at once. It assigns its OWN sequence numbers
// to every frame it sends — a caller's seq is never forwarded on a shared
// connection (a misrouting bug class, see motan-go#118) — and matches replies
// by seq in one reader goroutine. Writes are coalesced by a [FrameWriter]:
// no writer goroutine, concurrent callers share syscalls.
//
// Replies are returned as owned copies: body and extension values are copied
// out of the reader buffer into one allocation per reply. Start (async.go)
// sends without waiting: its callback gets the reply, uncopied, on the
// reader goroutine, or the deadline, cancellation or connection error.
//
// Cancelling a request's context frees its in-flight slot at once; a reply
// that arrives later is dropped and counted (Late). A reply whose seq was
// never issued, or was already answered, is dropped and counted (UnknownSeq).
// An idle connection sends heartbeats; if nothing is read for the liveness
// timeout the connection is closed and every pending request fails with an
// error wrapping [ErrClosed]. A peer that stops reading is caught by the
// write timeout (Options.WriteTimeout), and what may queue behind a stuck
// write is bounded ([MaxBacklog], [ErrWriteBacklog]).
//
// With Options.TLS, [Dial] runs a TLS handshake (bounded by the dial
// context) before the first frame; framing, multiplexing and heartbeats are
// the same on the encrypted connection.
package privconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/rawio"
)

// Sentinel errors.
var (
	// ErrClosed wraps every error of a request that failed because the
	// connection closed (peer gone, liveness timeout, malformed reply, Close).
	ErrClosed = errors.New("privconn: connection closed")
	// ErrTooManyInFlight is returned when the per-connection in-flight cap is
	// reached; the request was not sent.
	ErrTooManyInFlight = errors.New("privconn: too many requests in flight")
	// ErrNotSent wraps errors of requests that never reached the wire (the
	// connection was already closed): safe to retry elsewhere.
	ErrNotSent = errors.New("privconn: request not sent")
	// ErrPeerClosed is the cause when the peer closed the connection.
	ErrPeerClosed = errors.New("privconn: peer closed the connection")
	// ErrLivenessTimeout is the cause when the peer stopped answering.
	ErrLivenessTimeout = errors.New("privconn: peer did not answer heartbeats")
	// ErrTLS wraps Dial errors of the TLS handshake (Options.TLS).
	ErrTLS = errors.New("privconn: tls")
	// ErrWriteBacklog is returned when MaxBacklog bytes already wait
	// behind a socket write the peer is not taking: the request was not
	// sent and the connection stays open. It wraps ErrTooManyInFlight
	// (an overloaded connection: try another, else RESOURCE_EXHAUSTED).
	ErrWriteBacklog = fmt.Errorf("%w: write backlog full", ErrTooManyInFlight)
)

// Defaults.
const (
	DefaultMaxInFlight = 1024
	DefaultHeartbeat   = 10 * time.Second
	// DefaultWriteTimeout bounds a socket write to the peer (as the
	// listeners' limits.send_timeout does to a client).
	DefaultWriteTimeout = 10 * time.Second
)

// Options configure a Conn. The zero value is usable.
type Options struct {
	// MaxInFlight caps concurrent requests; default DefaultMaxInFlight.
	MaxInFlight int
	// Heartbeat is the idle interval after which a heartbeat is sent;
	// 0 = DefaultHeartbeat, negative disables heartbeats and liveness.
	Heartbeat time.Duration
	// Liveness closes the connection when nothing was read for this long;
	// default 3 × Heartbeat.
	Liveness time.Duration
	// WriteTimeout bounds each socket write: a peer that takes no bytes
	// for this long (it stopped reading; liveness alone does not catch a
	// peer that still sends) closes the connection and fails its pending
	// requests. 0 = DefaultWriteTimeout, negative disables it.
	WriteTimeout time.Duration
	// ReadBufferSize is the initial read buffer, and the size it returns to
	// after a large reply (codec.Reader); default 32 KiB.
	ReadBufferSize int
	// Logger receives connection-level events (never payloads).
	Logger *slog.Logger
	// Hooks, called from the reader goroutine; may be nil.
	OnLate       func() // a reply arrived after its request was abandoned
	OnUnknownSeq func() // a reply matched no request
	// OnPush receives each PUSH frame the peer sends (a server-initiated
	// message, upstreams[].push); f aliases the read buffer and is valid
	// only during the call, which must not block. nil drops pushes.
	OnPush func(f *codec.Frame)
	// TLS, when set, makes Dial secure the connection: it returns the
	// tls.Config for this handshake (ServerName set), so rotated
	// certificates apply to each new connection.
	TLS func(ctx context.Context) (*tls.Config, error)
}

// Stats are a Conn's counters.
type Stats struct {
	InFlight       int
	Sent           uint64
	Received       uint64
	Late           uint64
	UnknownSeq     uint64
	HeartbeatsSent uint64
	HeartbeatsRecv uint64
}

// waiter is one pending request: a Do parked on ch, or a Start's done
// callback (async.go). Whoever removes it from the pending map owns
// completing it.
type waiter struct {
	ch   chan struct{} // cap 1
	resp *codec.Frame
	err  error

	// Start (async.go): the callback, the deadline (unix ns, 0 = none),
	// the state of the frame's encoding and the references (Start's and
	// the completion's).
	done     func(resp *codec.Frame, err error)
	deadline int64
	state    atomic.Uint32
	refs     atomic.Int32
	h        *Handle // StartHandle's, set at register
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

// Conn is a multiplexed client connection. Safe for concurrent use.
type Conn struct {
	nc     net.Conn
	c      codec.Codec
	w      *FrameWriter
	opts   Options
	log    *slog.Logger
	remote string

	seq      atomic.Uint32
	inflight atomic.Int64

	mu        sync.Mutex
	pending   map[uint32]*waiter
	abandoned map[uint32]int64   // seq -> unix nano when abandoned
	streams   map[uint32]*Stream // open stream exchanges (stream.go)
	closed    bool
	err       error
	expiry    expiry // deadlines of Start's callbacks (async.go)

	done     chan struct{}
	readSeen atomic.Bool // set by the reader on every frame

	sent, received, late, unknown, hbSent, hbRecv atomic.Uint64
	wg                                            sync.WaitGroup
}

// Dial connects to addr and returns a Conn; with opts.TLS the TLS
// handshake completes within ctx before Dial returns.
func Dial(ctx context.Context, addr string, c codec.Codec, opts Options) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc = rawio.Wrap(nc)
	if opts.TLS != nil {
		if tc, ok := rawio.TCP(nc); ok {
			_ = tc.SetNoDelay(true)
		}
		cfg, err := opts.TLS(ctx)
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("%w: config for %s: %w", ErrTLS, addr, err)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("%w: handshake with %s: %w", ErrTLS, addr, err)
		}
		nc = tc
	}
	return New(nc, c, opts), nil
}

// New takes ownership of nc and starts the reader (and heartbeat) goroutines.
func New(nc net.Conn, c codec.Codec, opts Options) *Conn {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Liveness <= 0 {
		opts.Liveness = 3 * opts.Heartbeat
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 32 << 10
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if tc, ok := rawio.TCP(nc); ok {
		_ = tc.SetNoDelay(true)
	}
	cn := &Conn{
		nc:        nc,
		c:         c,
		w:         NewFrameWriter(nc, c),
		opts:      opts,
		remote:    nc.RemoteAddr().String(),
		pending:   make(map[uint32]*waiter, 64),
		abandoned: make(map[uint32]int64),
		done:      make(chan struct{}),
	}
	cn.w.SetTimeout(opts.WriteTimeout)
	cn.log = log.With("component", "privconn", "remote", cn.remote)
	cn.w.OnError = func(err error) { cn.fail(fmt.Errorf("%w: write: %w", ErrClosed, err)) }
	cn.wg.Add(1)
	go cn.readLoop()
	if opts.Heartbeat > 0 {
		cn.wg.Add(1)
		go cn.heartbeatLoop()
	}
	return cn
}

// RemoteAddr is the peer address.
func (cn *Conn) RemoteAddr() string { return cn.remote }

// InFlight is the number of requests awaiting a reply.
func (cn *Conn) InFlight() int { return int(cn.inflight.Load()) }

// Done is closed when the connection has closed.
func (cn *Conn) Done() <-chan struct{} { return cn.done }

// Err returns why the connection closed (nil while open).
func (cn *Conn) Err() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

// Stats returns the counters.
func (cn *Conn) Stats() Stats {
	return Stats{
		InFlight:       cn.InFlight(),
		Sent:           cn.sent.Load(),
		Received:       cn.received.Load(),
		Late:           cn.late.Load(),
		UnknownSeq:     cn.unknown.Load(),
		HeartbeatsSent: cn.hbSent.Load(),
		HeartbeatsRecv: cn.hbRecv.Load(),
	}
}

// Close closes the connection, fails pending requests and waits for the
// goroutines to exit.
func (cn *Conn) Close() error {
	cn.fail(fmt.Errorf("%w: closed by client", ErrClosed))
	cn.wg.Wait()
	return nil
}

// fail closes the connection once with cause err and fails every pending
// request.
func (cn *Conn) fail(err error) {
	cn.mu.Lock()
	if cn.closed {
		cn.mu.Unlock()
		return
	}
	cn.closed = true
	cn.err = err
	pending := cn.pending
	cn.pending = nil
	streams := cn.streams
	cn.streams = nil
	cn.mu.Unlock()
	cn.failStreams(streams, err)
	close(cn.done)
	_ = cn.nc.Close()
	cn.expiry.stop()
	for _, w := range pending {
		if w.done == nil {
			w.err = err
			w.ch <- struct{}{}
			continue
		}
		cn.completeErr(w, err)
	}
	cn.log.Debug("connection closed", "err", err, "failed_pending", len(pending))
}

// nextSeq registers w under a fresh seq. It fails if the conn is closed.
func (cn *Conn) register(w *waiter) (uint32, error) {
	cn.mu.Lock()
	if cn.closed {
		err := cn.err
		cn.mu.Unlock()
		return 0, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	for {
		s := cn.seq.Add(1)
		_, busy := cn.pending[s]
		if _, sbusy := cn.streams[s]; busy || sbusy {
			continue
		}
		cn.pending[s] = w
		if w.h != nil {
			w.h.seq.Store(s)
			w.h.cn.Store(cn)
		}
		cn.armExpiry(w.deadline)
		cn.mu.Unlock()
		return s, nil
	}
}

// Do sends req and waits for its reply. It overwrites req.Seq with the
// connection's own sequence number and clears the response flags. The
// returned frame is owned by the caller. A reply's Result is not an error;
// errors are transport failures (wrapping ErrClosed), ErrTooManyInFlight
// (or ErrWriteBacklog, which wraps it: not sent), codec.ErrInvalidFrame,
// or ctx's error. The goroutine that ends up writing the socket may stay
// past ctx's deadline, at most Options.WriteTimeout per write.
func (cn *Conn) Do(ctx context.Context, req *codec.Frame) (*codec.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cn.inflight.Add(1) > int64(cn.opts.MaxInFlight) {
		cn.inflight.Add(-1)
		return nil, ErrTooManyInFlight
	}
	w := waiterPool.Get().(*waiter)
	seq, err := cn.register(w)
	if err != nil {
		cn.inflight.Add(-1)
		waiterPool.Put(w)
		return nil, err
	}
	req.Seq = seq
	req.Flags &^= codec.FlagResponse | codec.FlagOneway | codec.FlagHeartbeat | codec.FlagPush
	if err := cn.w.WriteFrame(req); err != nil {
		if cn.unregister(seq, w) {
			cn.inflight.Add(-1)
			waiterPool.Put(w)
		} else {
			<-w.ch
			cn.inflight.Add(-1)
			w.resp, w.err = nil, nil
			waiterPool.Put(w)
		}
		if errors.Is(err, codec.ErrInvalidFrame) || errors.Is(err, ErrWriteBacklog) {
			return nil, err
		}
		err = fmt.Errorf("%w: write: %w", ErrClosed, err)
		cn.fail(err)
		return nil, err
	}
	cn.sent.Add(1)
	select {
	case <-w.ch:
	case <-ctx.Done():
		if cn.unregister(seq, w) {
			// Nobody will signal w: the slot is free now.
			cn.inflight.Add(-1)
			waiterPool.Put(w)
			return nil, ctx.Err()
		}
		// The reader (or fail) took w and is signalling it.
		<-w.ch
	}
	cn.inflight.Add(-1)
	resp, err := w.resp, w.err
	w.resp, w.err = nil, nil
	waiterPool.Put(w)
	return resp, err
}

// unregister removes seq if it still maps to w and remembers it as
// abandoned (so a late reply is told apart from an unknown one).
func (cn *Conn) unregister(seq uint32, w *waiter) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.pending == nil || cn.pending[seq] != w {
		return false
	}
	delete(cn.pending, seq)
	if len(cn.abandoned) < 1<<16 {
		cn.abandoned[seq] = time.Now().UnixNano()
	}
	return true
}

// Send sends a ONEWAY frame (no reply expected). It overwrites req.Seq and
// sets FlagOneway.
func (cn *Conn) Send(ctx context.Context, req *codec.Frame) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-cn.done:
		return fmt.Errorf("%w: %w", ErrNotSent, cn.Err())
	default:
	}
	req.Seq = cn.seq.Add(1)
	req.Flags = req.Flags&^(codec.FlagResponse|codec.FlagHeartbeat|codec.FlagPush) | codec.FlagOneway
	return cn.write(req)
}

func (cn *Conn) readLoop() {
	defer cn.wg.Done()
	// Replies completed here may leave their writes to rb, flushed before
	// every read of the socket (connio.Batch).
	var rb connio.Batch
	defer rb.Flush()
	r := codec.NewReader(connio.FlushingReader{R: cn.nc, B: &rb}, cn.c, cn.opts.ReadBufferSize)
	var f codec.Frame
	for {
		if err := r.ReadFrame(&f); err != nil {
			switch {
			case errors.Is(err, codec.ErrMalformed):
				cn.fail(fmt.Errorf("%w: malformed reply: %w", ErrClosed, err))
			case errors.Is(err, io.EOF):
				cn.fail(fmt.Errorf("%w: %w", ErrClosed, ErrPeerClosed))
			default:
				cn.fail(fmt.Errorf("%w: read: %w", ErrClosed, err))
			}
			return
		}
		cn.readSeen.Store(true)
		switch {
		case f.Flags.Has(codec.FlagHeartbeat):
			if f.Flags.Has(codec.FlagResponse) {
				cn.hbRecv.Add(1)
				continue
			}
			// The peer probes us: answer.
			hb := codec.Frame{Seq: f.Seq, Flags: codec.FlagHeartbeat | codec.FlagResponse}
			_ = cn.w.WriteFrame(&hb)
			continue
		case f.Flags.Has(codec.FlagPush) && !f.Flags.Has(codec.FlagResponse):
			if cn.opts.OnPush != nil {
				cn.opts.OnPush(&f)
			}
			continue
		case !f.Flags.Has(codec.FlagResponse):
			// Stray request: not for a client connection.
			continue
		}
		cn.received.Add(1)
		if cn.dispatchStream(&f) {
			continue
		}
		cn.mu.Lock()
		w, ok := cn.pending[f.Seq]
		if ok {
			delete(cn.pending, f.Seq)
			cn.mu.Unlock()
			if w.done != nil {
				cn.complete(w, &f, nil, &rb)
				continue
			}
			w.resp = Clone(&f)
			w.ch <- struct{}{}
			continue
		}
		_, wasAbandoned := cn.abandoned[f.Seq]
		if wasAbandoned {
			delete(cn.abandoned, f.Seq)
		}
		cn.mu.Unlock()
		if wasAbandoned {
			cn.late.Add(1)
			if cn.opts.OnLate != nil {
				cn.opts.OnLate()
			}
		} else {
			cn.unknown.Add(1)
			if cn.opts.OnUnknownSeq != nil {
				cn.opts.OnUnknownSeq()
			}
		}
	}
}

// owned is a frame with room for a few extensions in the same allocation;
// ownedSmall adds room for a small body too.
type owned struct {
	f   codec.Frame
	ext [4]codec.Ext
}

const smallBody = 256

type ownedSmall struct {
	owned
	buf [smallBody]byte
}

// Clone returns a deep copy of f: the frame, its extension list and every
// byte it references, in one allocation when the bytes fit in 256 and there
// are at most 4 extensions, two otherwise.
func Clone(f *codec.Frame) *codec.Frame {
	n := len(f.Body)
	for i := range f.Ext {
		n += len(f.Ext[i].Value)
	}
	var o *owned
	var buf []byte
	if n <= smallBody {
		os := &ownedSmall{}
		o, buf = &os.owned, os.buf[:n:n]
	} else {
		o, buf = &owned{}, make([]byte, n)
	}
	o.f = *f
	if len(f.Ext) <= len(o.ext) {
		o.f.Ext = o.ext[:len(f.Ext):len(o.ext)]
	} else {
		o.f.Ext = make([]codec.Ext, len(f.Ext))
	}
	off := 0
	for i := range f.Ext {
		l := copy(buf[off:], f.Ext[i].Value)
		o.f.Ext[i] = codec.Ext{Key: f.Ext[i].Key, Value: buf[off : off+l : off+l]}
		off += l
	}
	if f.Body != nil {
		l := copy(buf[off:], f.Body)
		o.f.Body = buf[off : off+l : off+l]
	}
	return &o.f
}

func (cn *Conn) heartbeatLoop() {
	defer cn.wg.Done()
	tick := cn.opts.Heartbeat / 2
	if tick <= 0 {
		tick = cn.opts.Heartbeat
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastRead := time.Now()
	for {
		select {
		case <-cn.done:
			return
		case now := <-t.C:
			if cn.readSeen.Swap(false) {
				lastRead = now
			}
			idle := now.Sub(lastRead)
			if idle > cn.opts.Liveness {
				cn.log.Debug("liveness timeout", "idle", idle)
				cn.fail(fmt.Errorf("%w: %w after %v", ErrClosed, ErrLivenessTimeout, idle.Round(time.Millisecond)))
				return
			}
			if idle >= cn.opts.Heartbeat {
				hb := codec.Frame{Seq: cn.seq.Add(1), Flags: codec.FlagHeartbeat}
				if err := cn.w.WriteFrame(&hb); err != nil && !errors.Is(err, ErrWriteBacklog) {
					cn.fail(fmt.Errorf("%w: write heartbeat: %w", ErrClosed, err))
					return
				}
				cn.hbSent.Add(1)
			}
			cn.pruneAbandoned(now)
		}
	}
}

// pruneAbandoned forgets abandoned seqs older than the liveness window.
func (cn *Conn) pruneAbandoned(now time.Time) {
	cutoff := now.Add(-2 * cn.opts.Liveness).UnixNano()
	cn.mu.Lock()
	for s, t := range cn.abandoned {
		if t < cutoff {
			delete(cn.abandoned, s)
		}
	}
	cn.mu.Unlock()
}
