package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/grpcdirect"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
	"github.com/meshgate/meshgate/meshgate/stream"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// conn is one downstream connection.
type conn struct {
	s   *Server
	nc  net.Conn
	rd  *codec.Reader // nil while a plain TCP connection waits for bytes (idle.go)
	ctx context.Context
	end context.CancelFunc
	// stop ends ctx with a cause: errShuttingDown when a drain timed out
	// (the calls still in flight are answered UNAVAILABLE).
	stop context.CancelCauseFunc

	calls    sync.WaitGroup
	inflight atomic.Int64
	sem      chan struct{}

	// deadline state (read goroutine), dmu orders SetReadDeadline against
	// drainNudge.
	dmu        sync.Mutex
	frameStart time.Time
	idle, rto  time.Duration
	rdl        time.Time // the read deadline armed on the socket (under dmu)
	wdl        time.Time // the write deadline armed (by the flusher)

	// writer state
	wmu      sync.Mutex
	wcond    *sync.Cond // signalled by the flusher as wbuf drains
	wbuf     []byte     // replies waiting to be written, in *wp
	wp       *[]byte    // the pooled buffer wbuf lives in; nil when none is held
	flushing bool
	werr     error
	seqs     map[uint32]struct{}

	push    pushState     // push.go
	streams *stream.Table // stream exchanges in flight (stream.go); created by the read goroutine

	// buffer-less wait of a plain TCP connection (idle.go): raw is its
	// socket (nil: the connection keeps rd for its life), peekFn and
	// waitFn the wait's callback and goroutine (method values made once).
	raw    syscall.RawConn
	peekFn func(fd uintptr) bool
	waitFn func()
	peek   connio.Peeker
	box    *readerBox // the reader held (rd is box.rd), with the frame read
	// parked wait of an idle plain TCP connection (idle.go): pk its
	// place in the listener's parker; parked and parkDL (the deadline
	// of the wait, Unix nanoseconds: conn stays in the 512-byte size
	// class) under dmu; ptimer ends the wait at parkDL.
	pk     connio.Parked
	parked bool
	parkDL int64
	ptimer *time.Timer

	// replyNow's non-blocking write (async.go): writeFn is writeRaw,
	// bound once; wnow the bytes, wnowN and wnowErr its result (under wmu).
	writeFn func(fd uintptr) bool
	wnow    []byte
	wnowN   int
	wnowErr error
	async   asyncSet // requests in flight on the I/O goroutines
	// batch: the reading goroutine's writes left for one flush before it
	// reads again (requests started on it, connio.Batch)
	batch connio.Batch
}

func (s *Server) newConn(nc net.Conn) *conn {
	ctx, stop := context.WithCancelCause(context.Background())
	c := &conn{s: s, nc: nc, ctx: ctx, stop: stop, seqs: map[uint32]struct{}{}}
	c.end = func() { stop(context.Canceled) }
	c.wcond = sync.NewCond(&c.wmu)
	if c.raw = connio.RawConn(nc); c.raw != nil {
		c.peekFn, c.waitFn, c.writeFn = c.peek.Ready, c.idleWait, c.writeRaw
		// The end of the connection's context (abort, a failed write)
		// cancels its requests in flight on the I/O goroutines (async.go)
		// as it cancels the workers' calls.
		// It also takes a parked connection out of the parker (idle.go).
		context.AfterFunc(ctx, c.ended)
		c.pk.Init(c.raw, c.unparked)
	} else {
		c.takeReader() // kept for the connection's life
	}
	return c
}

// readBase is the buffer of a frame reader: one frame of up to about 2 KB
// (a 1 KB body with its header and extensions) is read with one syscall;
// larger frames borrow a shared pooled buffer from the codec's Reader
// while they are read. A plain TCP connection holds a reader only while
// bytes arrive (idle.go); a TLS connection holds one for its life.
const readBase = 2048

// deadlineReader arms the read deadline before each socket read: the idle
// timeout between frames, the read timeout once a frame has started
// (slowloris), and the drain quiet period when draining with nothing in
// flight.
//
// Arming a deadline re-arms a runtime timer, and this runs before every
// read. The idle deadline is therefore armed with slack (idle + idle/8)
// and kept while it still lies between idle and idle + idle/8 from now:
// it is re-armed about once every idle/8 of activity instead of once per
// read, and an idle connection is closed between idle and 9/8 × idle
// after its last read, never earlier. The read timeout of a started frame
// and the drain quiet period are armed exactly.
type deadlineReader struct{ c *conn }

func (d deadlineReader) Read(p []byte) (int, error) {
	if d.c.batch.Pending() {
		d.c.batch.Flush() // before waiting for more bytes (connio.Batch)
	}
	d.c.armRead(time.Now())
	return d.c.nc.Read(p)
}

// armRead arms the read deadline for a socket read (or the buffer-less
// wait for one) at now; see deadlineReader.
func (c *conn) armRead(now time.Time) {
	var dl, late time.Time // arm a deadline in [dl, late]
	if c.buffered() > 0 {
		if c.frameStart.IsZero() {
			c.frameStart = now
		}
		dl = c.frameStart.Add(c.rto)
		late = dl
	} else {
		c.frameStart = time.Time{}
		dl = now.Add(c.idle)
		late = dl.Add(c.idle / 8)
	}
	c.dmu.Lock()
	if c.s.draining.Load() && c.inflight.Load() == 0 && c.buffered() == 0 {
		if q := now.Add(c.s.opts.DrainQuiet); q.Before(dl) {
			dl, late = q, q
		}
	}
	if c.rdl.Before(dl) || c.rdl.After(late) {
		_ = c.nc.SetReadDeadline(late)
		c.rdl = late
	}
	c.dmu.Unlock()
}

// drainNudge shortens the read deadline of an idle connection when the
// server starts draining.
func (c *conn) drainNudge() {
	c.dmu.Lock()
	if c.inflight.Load() == 0 {
		c.rdl = time.Now().Add(c.s.opts.DrainQuiet)
		_ = c.nc.SetReadDeadline(c.rdl)
		if c.parked { // its wait goes on, with this deadline, on a goroutine
			c.parkDL = c.rdl.UnixNano()
			c.s.park.Unpark(&c.pk)
		}
	}
	c.dmu.Unlock()
}

// errShuttingDown ends the calls still in flight when a drain timed out;
// their clients are answered UNAVAILABLE, "server shutting down".
var errShuttingDown = errors.New("inbound: drain timed out")

// shutdownStatus is err, or UNAVAILABLE "server shutting down" when the
// call failed because its connection was ended by a timed-out drain.
func (c *conn) shutdownStatus(err error) error {
	if err != nil && context.Cause(c.ctx) == errShuttingDown {
		return status.Error(codes.Unavailable, "server shutting down")
	}
	return err
}

// abort cancels every call and closes the socket.
func (c *conn) abort() {
	c.end()
	_ = c.nc.Close()
}

// serve runs the connection, from its accept until it is closed. A
// connection costs a goroutine only while it is busy or waiting for
// bytes, and the goroutine that waits is kept small (idle.go): when the
// connection goes idle, the goroutine that handled its frames (whose
// stack the request path has grown) arms the idle deadline, hands the wait
// to a fresh goroutine and ends.
func (c *conn) serve() {
	if !c.start() {
		c.dropReader()
		c.end()
		c.s.removeConn(c)
		return
	}
	c.run()
}

// start prepares the connection (limits, push registration, the TLS
// handshake); false when it must close.
//
//go:noinline
func (c *conn) start() bool {
	s := c.s
	t := s.table.Load()
	c.attachPush()
	c.sem = make(chan struct{}, t.MaxInFlight)
	c.idle, c.rto = t.IdleTimeout, t.ReadTimeout
	if tc, ok := c.nc.(*tls.Conn); ok {
		// The handshake is bounded like a frame read (slowloris).
		ctx, cancel := context.WithTimeout(c.ctx, c.rto)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.rejected("tls_handshake")
			s.log.Debug("TLS handshake failed", "remote", c.nc.RemoteAddr().String(), "err", err)
			_ = c.nc.Close()
			c.detachPush()
			return false
		}
	}
	return true
}

// run reads and handles frames on the current goroutine until the
// connection goes idle (a plain TCP connection with nothing buffered: the
// wait moves to a fresh goroutine, idle.go) or must close.
func (c *conn) run() {
	for {
		if c.rd == nil {
			c.batch.Flush()
			if c.linger() {
				continue
			}
			c.goIdle()
			return
		}
		if err := c.rd.ReadFrame(&c.box.f); err != nil {
			reason, rerr, again := c.readFailed(err)
			if !again {
				c.close(reason, rerr)
				return
			}
			continue
		}
		c.frameStart = time.Time{}
		if !c.handle(&c.box.f) {
			c.close("auth_ext", codec.ErrMalformed)
			return
		}
		c.parkReader()
	}
}

// close ends the connection: the reader goes, the close is counted and
// logged, the replies in flight are written, the socket closed.
func (c *conn) close(reason string, rerr error) {
	c.batch.Flush()
	c.dropReader()
	c.finish(reason, rerr)
	c.detachPush()
	c.end()
	c.s.removeConn(c)
}

// readFailed classifies a failed read: again when the connection stays
// open (an idle deadline while replies are awaited or while draining),
// else the close reason and the decode error.
//
//go:noinline
func (c *conn) readFailed(err error) (reason string, rerr error, again bool) {
	if errors.Is(err, os.ErrDeadlineExceeded) && c.buffered() == 0 {
		if c.s.draining.Load() && c.inflight.Load() == 0 {
			return "", nil, false // drained: quiet and nothing in flight
		}
		if c.inflight.Load() > 0 || c.s.draining.Load() {
			return "", nil, true // idle but still waiting for replies
		}
		return "idle_timeout", nil, false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return "", nil, false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return "", nil, false // connection reset and the like
	}
	return errorReason(err), err, false
}

// finish counts and logs why the connection closes, lets the replies of
// requests in flight go out and closes the socket.
//
//go:noinline
func (c *conn) finish(reason string, rerr error) {
	s := c.s
	switch {
	case rerr != nil:
		s.malformed(reason)
		if reason == "truncated" || reason == "read_timeout" {
			s.log.Debug("closing connection", "remote", c.nc.RemoteAddr().String(), "reason", reason)
		} else {
			// At most one line a second (suppressed=N counts the
			// rest; the metric counts every one): a client that opens
			// connections to send garbage must not flood the log.
			s.badFrames.Warn("malformed frame, closing connection", "remote", c.nc.RemoteAddr().String(), "reason", reason, "err", rerr)
		}
	case reason != "":
		s.rejected(reason)
		s.log.Debug("closing connection", "remote", c.nc.RemoteAddr().String(), "reason", reason)
	}
	// Replies of requests in flight go out before the close.
	c.calls.Wait()
	_ = c.nc.Close()
}

// handle processes one decoded frame on the read goroutine. It returns false
// when the connection must close (malformed auth extension).
func (c *conn) handle(f *codec.Frame) bool {
	s := c.s
	if f.Flags&codec.FlagHeartbeat != 0 {
		if f.Flags&codec.FlagResponse == 0 {
			if s.mHeartbeats != nil {
				s.mHeartbeats.Inc()
			}
			c.reply(&codec.Frame{Cmd: f.Cmd, Seq: f.Seq, UIN: f.UIN, Flags: codec.FlagResponse | codec.FlagHeartbeat})
		}
		return true
	}
	if !f.IsRequest() {
		s.rejected("not_request")
		return true
	}
	t := s.table.Load()
	oneway := f.Flags&codec.FlagOneway != 0
	var keyID uint32
	if t.Auth != nil || t.Authz != nil {
		id, pass, keep := c.authorize(t, f, oneway)
		if !pass {
			return keep
		}
		keyID = id
	}
	c.learnUIN(f.UIN)
	if c.streamFrame(f) {
		return true // a frame of an exchange in flight, or a CANCEL (stream.go)
	}
	var r *Route
	for try := 0; ; try++ {
		r = t.Lookup(f.Cmd, f.UIN)
		if r == nil {
			s.rejected("unknown_cmd")
			if !oneway {
				c.replyError(f, codec.ResultUnknownCommand, "unknown command")
			}
			return true
		}
		r = r.pick(f) // split: the chosen backend's route
		if r.acquire() {
			break
		}
		// The upstream was retired by a reload: take the new table.
		if try == 3 {
			s.rejected("upstream_retired")
			if !oneway {
				c.replyError(f, codec.ResultUnavailable, "upstream reloading")
			}
			return true
		}
		t = s.table.Load()
	}
	if r.Switch.Off() {
		r.release()
		s.rejected("switched_off")
		if !oneway {
			c.replySwitch(f, r.Switch)
		}
		return true
	}
	// The listener-wide cap (overload.max_in_flight) counts stream
	// exchanges too: they hold their slot until they end.
	if !t.Admission.Acquire(r.Policy.Core) {
		r.release()
		s.rejected("overload")
		if !oneway {
			c.replyError(f, codec.ResultOverloaded, "overloaded: listener_overload")
		}
		return true
	}
	if r.Stream != "" {
		c.startStream(r, f, keyID, t.Auth != nil, t.MD, t.Admission)
		return true
	}
	if !oneway {
		c.wmu.Lock()
		_, dup := c.seqs[f.Seq]
		if !dup {
			c.seqs[f.Seq] = struct{}{}
		}
		c.wmu.Unlock()
		if dup {
			r.release()
			t.Admission.Release()
			s.rejected("duplicate_seq")
			c.replyError(f, codec.ResultBadRequest, "duplicate seq in flight")
			return true
		}
	}
	// Backpressure: block reading while the connection is at its cap.
	c.sem <- struct{}{}
	q := newRequest(c, r, f, keyID, t.Auth != nil, oneway)
	q.res.adm = t.Admission
	q.mapMetadata(t, f)
	c.inflight.Add(1)
	if s.mInFlight != nil {
		s.mInFlight.Inc()
	}
	c.calls.Add(1)
	if !q.startAsync() && !q.startAsyncGRPC() {
		s.work.Dispatch(q)
	}
	return true
}

// request is one bridged call; pooled.
type request struct {
	c       *conn
	r       *Route
	res     resilienceState // resilience.go
	cmd     uint32
	seq     uint32
	uin     uint64
	oneway  bool
	timeout time.Duration
	md      *mapping.RequestMD
	start   time.Time
	req     rawcodec.Message
	resp    rawcodec.Message
	header  metadata.MD
	trailer metadata.MD
	out     codec.Frame
	mm      *mapping.MDMap // the table's extension ⇄ metadata pairs
	// private → private: the frame sent upstream, and the copy of the
	// request's body and extension values it points into.
	fwd  codec.Frame
	fbuf []byte
	dl   [4]byte
	mirr mirrorState // shadow copy (migrate.go)
	// private → private on the I/O goroutines (async.go): the pool's
	// call state, and asyncDone bound once.
	call         upstream.Call
	asyncFn      func(resp *codec.Frame, err error)
	anext, aprev *request // in the connection's asyncSet
	// private → gRPC on the I/O goroutines (asyncgrpc.go): the pool's
	// call state, asyncGRPCDone bound once, and whether gcall is in flight.
	gcall    grpcpool.DirectCall
	gasyncFn func(error)
	gasync   bool
	// a worker's call through gcall (asyncgrpc.go, waitDirect): its
	// completion, and workerDone bound once
	wdone   chan error
	wdoneFn func(error)
	// Reused across pooled lives: the call options (header and trailer
	// capture into q.header and q.trailer; on the direct transport the
	// request metadata is read from q.md and the response metadata
	// refilled into q.header and q.trailer with q.mds: grpcdirect's
	// OutgoingMD and MDStore; an attempt's endpoint is q.at).
	opts []grpc.CallOption
	mds  grpcdirect.MDStore
	at   grpcpool.AtEndpoint // the Guard's endpoint of an attempt (resilience.go)
}

var reqPool = sync.Pool{New: func() any {
	q := &request{md: mapping.NewRequestMD()}
	q.opts = []grpc.CallOption{grpc.Header(&q.header), grpc.Trailer(&q.trailer), grpc.StaticMethod(),
		&grpcdirect.OutgoingMD{MD: &q.md.MD}, &q.mds, &q.at}
	q.res.attemptFn = q.attempt
	return q
}}

func newRequest(c *conn, r *Route, f *codec.Frame, keyID uint32, authed, oneway bool) *request {
	q := reqPool.Get().(*request)
	q.c, q.r, q.cmd, q.seq, q.uin, q.oneway = c, r, f.Cmd, f.Seq, f.UIN, oneway
	q.start = time.Now()
	q.timeout = r.Timeout
	if r.Private != nil {
		if q.asyncFn == nil {
			q.asyncFn = q.asyncDone // bound once per pooled request
		}
		if d, ok := mapping.Timeout(f); ok {
			q.timeout = d
		}
		q.copyFrame(f, r.SendCmd)
		return q
	}
	if d, ok := q.md.FromFrame(f, keyID, authed); ok {
		q.timeout = d
	}
	q.req.SetBytes(f.Body)
	return q
}

// copyFrame copies request f (which aliases the read buffer) into q.fwd for
// a private upstream: cmd rewritten, every extension kept in order except
// ext 2 (auth, verified and stripped here) and ext 3 (deadline, re-sent
// with the remaining time); unknown keys below 0x8000 and application keys
// pass unchanged. One buffer, reused across pooled lives.
func (q *request) copyFrame(f *codec.Frame, cmd uint32) {
	n := len(f.Body)
	for i := range f.Ext {
		n += len(f.Ext[i].Value)
	}
	if cap(q.fbuf) < n {
		q.fbuf = make([]byte, 0, n)
	}
	b := q.fbuf[:0]
	q.fwd = codec.Frame{Cmd: cmd, UIN: f.UIN, Flags: f.Flags & codec.FlagOneway, Ext: q.fwd.Ext[:0]}
	for i := range f.Ext {
		e := &f.Ext[i]
		if e.Key == codec.ExtAuth || e.Key == codec.ExtDeadline {
			continue
		}
		s := len(b)
		b = append(b, e.Value...) // within capacity: never moves
		q.fwd.Ext = append(q.fwd.Ext, codec.Ext{Key: e.Key, Value: b[s:len(b):len(b)]})
	}
	s := len(b)
	b = append(b, f.Body...)
	q.fwd.Body = b[s:]
	q.fbuf = b
}

func (q *request) release() {
	q.resp.Free()
	q.req.Free()
	q.out.Reset()
	q.fwd.Reset()
	clear(q.fwd.Ext[:cap(q.fwd.Ext)])
	if cap(q.fbuf) > 64<<10 {
		q.fbuf = nil
	}
	q.md.Reset()
	q.clearMD()
	q.c, q.r, q.mm = nil, nil, nil
	reqPool.Put(q)
}

// directTransport reports whether gRPC target u sends the request
// metadata of a grpcdirect.OutgoingMD call option (grpcpool.Pool on the
// direct transport).
func directTransport(u Upstream) bool {
	d, ok := u.(interface{ DirectTransport() bool })
	return ok && d.DirectTransport()
}

// clearMD empties q.header and q.trailer, keeping their storage for the
// next call (q.mds).
func (q *request) clearMD() {
	q.mds.Clear(q.header)
	q.mds.Clear(q.trailer)
}

func (q *request) run() {
	if q.r.Private != nil {
		q.forward()
		return
	}
	c, r := q.c, q.r
	oc := q.startTelemetry()
	ctx := c.ctx
	if !directTransport(r.Upstream) {
		// grpc-go's transport reads the metadata from the context; the
		// direct one from q.opts (grpcdirect.OutgoingMD).
		ctx = metadata.NewOutgoingContext(ctx, q.md.MD)
	}
	dl := time.Now().Add(q.timeout)
	err := q.transcodeRequest()
	if r.mig != nil {
		q.mirrorBefore()
	}
	if err == nil {
		var waited bool
		if waited, err = q.waitDirect(dl, oc.CallOptions(q.opts)); !waited && r.Guard != nil {
			waited, err = q.guardedUntil(ctx, dl, oc.CallOptions(q.opts))
		}
		if !waited {
			ctx, cancel := context.WithDeadline(ctx, dl)
			if r.Guard != nil {
				err = q.guarded(ctx, oc.CallOptions(q.opts))
			} else {
				err = r.Upstream.Invoke(ctx, r.Method, &q.req, &q.resp, oc.CallOptions(q.opts)...)
			}
			cancel()
		}
	}
	body, err := q.replyBody(c.shutdownStatus(err))
	q.endTelemetry(oc, err)
	r.Upstream.Release()
	elapsed := time.Since(q.start)
	// Count before answering: whoever sees the reply sees it counted.
	q.count(r, err, elapsed)
	if !q.oneway {
		q.out = codec.Frame{Cmd: q.cmd, Seq: q.seq, UIN: q.uin, Flags: codec.FlagResponse, Ext: q.out.Ext[:0]}
		mapping.ReplyFrame(&q.out, body, err, q.header, q.trailer)
		q.mm.ReplyFromMD(&q.out, q.header, q.trailer)
		if err != nil && c.s.log.Enabled(context.Background(), slog.LevelDebug) {
			c.s.log.Debug("upstream call failed", "method", r.Method, "err", err)
		}
		c.wmu.Lock()
		delete(c.seqs, q.seq)
		c.wmu.Unlock()
		c.reply(&q.out)
	}
	q.done()
}

// forward proxies the request frame to a private upstream (private →
// private) and its reply frame back with the client's seq: result, body and
// every reply extension unchanged. It is recorded like a bridged call
// (span, access log): the span is the child of the request's ext 1 and
// ext 1 sent upstream names the span.
func (q *request) forward() {
	c, r := q.c, q.r
	if r.mig != nil {
		q.mirrorBefore()
	}
	oc := q.startForwardTelemetry()
	dl := time.Now().Add(q.timeout)
	ctx := c.ctx
	if oc != nil {
		ctx = upstream.WithEndpointSink(ctx, &oc.Endpoint)
	}
	mapping.AppendDeadline(&q.fwd, &q.dl, time.Until(dl))
	var resp *codec.Frame
	var err error
	var cancel context.CancelFunc
	if pu, ok := r.Private.(policyUntilDoer); ok && !q.oneway {
		// The deadline as a value: no context or timer per request.
		resp, err = pu.DoPolicyUntil(ctx, dl, &q.fwd, &r.Policy)
	} else {
		ctx, cancel = context.WithDeadline(ctx, dl)
		if q.oneway {
			err = r.Private.Send(ctx, &q.fwd)
		} else {
			resp, err = r.doPrivate(ctx, &q.fwd)
		}
	}
	err = c.shutdownStatus(upstream.Status(ctx, err))
	if cancel != nil {
		cancel()
	}
	r.release()
	elapsed := time.Since(q.start)
	q.endForwardTelemetry(oc, err, resp)
	// Count before answering: whoever sees the reply sees it counted.
	q.count(r, countedAs(resp, err), elapsed)
	if !q.oneway {
		q.replyFrom(resp, err)
		c.wmu.Lock()
		delete(c.seqs, q.seq)
		c.wmu.Unlock()
		c.reply(&q.out)
	}
	q.done()
}

// replyFrom makes q.out the reply to a private upstream's answer resp or
// its failure err (a status, upstream.Status).
func (q *request) replyFrom(resp *codec.Frame, err error) {
	q.out = codec.Frame{Cmd: q.cmd, Seq: q.seq, UIN: q.uin, Flags: codec.FlagResponse, Ext: q.out.Ext[:0]}
	if err != nil {
		mapping.ReplyFrame(&q.out, nil, err, nil, nil)
		return
	}
	q.out.Result, q.out.Body = resp.Result, resp.Body
	q.out.Ext = append(q.out.Ext, resp.Ext...)
}

// countedAs is what a private call that ended with resp or err counts as:
// err, or the status of a failed reply.
func countedAs(resp *codec.Frame, err error) error {
	if err == nil && resp != nil && resp.Result != codec.ResultOK {
		return resultError(resp.Result)
	}
	return err
}

// resultError is the status a private upstream's failed reply counts as.
func resultError(result uint16) error {
	code, _ := codec.GRPCCode(result)
	return status.Error(codes.Code(code), "")
}

// count records the call in the metrics and leaves the in-flight gauge;
// called before the reply is written.
func (q *request) count(r *Route, err error, elapsed time.Duration) {
	s := q.c.s
	s.observe(r, err, elapsed)
	if s.mInFlight != nil {
		s.mInFlight.Dec()
	}
}

// done frees the call's slot once its reply is written.
func (q *request) done() {
	c := q.c
	if q.mirr.want {
		q.mirror()
	}
	q.res.adm.Release()
	q.res.adm, q.res.callOpts, q.res.err = nil, nil, nil
	q.release()
	<-c.sem
	if c.inflight.Add(-1) == 0 && c.s.draining.Load() {
		c.drainNudge()
	}
	c.calls.Done()
}

func (s *Server) observe(r *Route, err error, d time.Duration) {
	r.m.Observe(status.Code(err), d)
}

// replyError answers request f locally with result and message.
func (c *conn) replyError(f *codec.Frame, result uint16, msg string) {
	ext := [1]codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte(msg)}}
	c.reply(&codec.Frame{Cmd: f.Cmd, Seq: f.Seq, UIN: f.UIN, Flags: codec.FlagResponse, Result: result, Ext: ext[:]})
}

// reply encodes f and writes it, coalescing with concurrent replies: the
// goroutine that finds the socket free writes everything queued meanwhile.
func (c *conn) reply(f *codec.Frame) {
	c.loginReply(f)
	c.wmu.Lock()
	// Bounded queue: behind a write in progress at most maxPendingWrite
	// bytes wait; further repliers block (holding their in-flight slot, so
	// reading stops at the in-flight cap) until the socket takes them or
	// the send timeout cuts the connection.
	for c.flushing && len(c.wbuf) >= maxPendingWrite && c.werr == nil {
		c.wcond.Wait()
	}
	if c.werr != nil {
		c.wmu.Unlock()
		return
	}
	c.takeWbufLocked()
	b, err := c.s.codec.Append(c.wbuf, f)
	if err != nil {
		// The reply cannot be encoded (a body over the frame limit, an
		// extension too long): answer with result 6 and why, or keep a
		// failed reply's result with a shortened message.
		b, err = c.s.codec.Append(c.wbuf, mapping.Unencodable(f, err))
		if err != nil {
			c.wmu.Unlock()
			return
		}
	}
	c.wbuf = b
	if c.flushing {
		c.wmu.Unlock()
		return
	}
	c.flushing = true
	c.flushLocked()
	c.wmu.Unlock()
}

// flushLocked writes wbuf until it is empty; called with wmu held and
// flushing set by the caller, it returns with wmu held and flushing clear.
func (c *conn) flushLocked() {
	for len(c.wbuf) > 0 && c.werr == nil {
		out, op := c.wbuf, c.wp
		c.wbuf, c.wp = nil, nil
		c.wmu.Unlock()
		c.armWrite()
		_, werr := c.nc.Write(out)
		putWbuf(op, out)
		c.wmu.Lock()
		c.wcond.Broadcast()
		if werr != nil {
			c.werr = werr
			c.end()
			_ = c.nc.Close()
		}
	}
	c.flushing = false
	c.wcond.Broadcast()
}

// Reply buffers are shared by all connections: a connection takes one from
// wbufPool when it has a reply to encode and gives it back as soon as the
// socket has taken the bytes, so an idle connection holds no write buffer.
var wbufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

// takeWbufLocked gives the connection a pooled write buffer when it has
// none (every writer — replies and pushes — encodes into it); wmu held.
func (c *conn) takeWbufLocked() {
	if c.wp == nil {
		c.wp = wbufPool.Get().(*[]byte)
		c.wbuf = (*c.wp)[:0]
	}
}

// putWbuf returns the pooled buffer p, now holding b, to wbufPool (buffers
// grown past 64 KB are dropped).
func putWbuf(p *[]byte, b []byte) {
	if p == nil || cap(b) > 64<<10 {
		return
	}
	*p = b[:0]
	wbufPool.Put(p)
}

// maxPendingWrite bounds the reply bytes queued behind a socket write.
const maxPendingWrite = 1 << 20

// armWrite arms the write deadline for a flush: sendTimeout from now, with
// the same slack as the idle read deadline (kept while it lies between T
// and T + T/8 from now), so a busy connection re-arms the timer about once
// every T/8 rather than once per write. Called by the flusher only.
func (c *conn) armWrite() {
	t := c.sendTimeout()
	now := time.Now()
	if dl := now.Add(t); c.wdl.Before(dl) || c.wdl.After(dl.Add(t/8)) {
		c.wdl = dl.Add(t / 8)
		_ = c.nc.SetWriteDeadline(c.wdl)
	}
}

// sendTimeout bounds one socket write: Options.SendTimeout, else the idle
// timeout.
func (c *conn) sendTimeout() time.Duration {
	if d := c.s.opts.SendTimeout; d > 0 {
		return d
	}
	return c.idle
}
