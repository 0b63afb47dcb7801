package inbound

import (
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/grpcdirect"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// Private requests completed on the I/O goroutines.
//
// A private → private request whose route needs one attempt (no retries,
// no hedging, no shadow) on a plain TCP connection, with telemetry off,
// does not go to a request worker: the connection's reader sends it
// itself (upstream.PrivatePool.StartPolicy) and reads on; the upstream
// connection's reader, which receives the reply, builds the client's
// reply in the completion callback and writes it (replyNow). Nobody parks
// per request: the request costs no goroutine hand-off and no wake-up
// besides the sockets' own. Everything else about the request is as on a
// worker (forward): cancellation when the connection's context ends
// (abort, a failed write: asyncSet), listener admission, the in-flight slot (reading stops
// at the cap), the duplicate-seq check, the deadline sent upstream
// (ext 3) and the reply's deadline, metrics, the reply frame, graceful
// drain. A request the upstream's circuit breaker would queue goes to a
// worker after all (resilience.ErrWouldWait).
//
// The callback must not block the upstream connection's reader on a slow
// client: the reply is encoded into the connection's write buffer and
// written with one non-blocking attempt on the socket; what the socket
// does not take (or everything, while another write is in progress) is
// left to the connection's coalescing writer, on a goroutine of its own
// when none is writing. Past maxPendingWrite queued bytes the request
// keeps its in-flight slot until the queue drains, on a goroutine of its
// own, so a client that does not read stops being read at its in-flight
// cap, as with worker replies.

// asyncStarter is a private target that starts requests without waiting
// (upstream.PrivatePool).
type asyncStarter interface {
	StartPolicy(c *upstream.Call, req *codec.Frame, deadline time.Time, pol *resilience.Policy, done func(resp *codec.Frame, err error)) error
}

// asyncRoute resolves whether the route's requests may complete on the
// I/O goroutines (see above); called once per route when the table is
// built.
func (r *Route) asyncRoute() {
	r.async = nil
	if r.Stream != "" || r.Policy.MaxAttempts > 1 || r.Policy.HedgeDelay > 0 {
		return
	}
	if sp, ok := r.Private.(asyncStarter); ok {
		r.async = sp
	}
}

// startAsync sends q from the connection's reader; false (nothing done)
// when q must go to a worker instead.
func (q *request) startAsync() bool {
	c, r := q.c, q.r
	if r.async == nil || r.mig != nil || q.oneway || c.raw == nil || c.s.opts.Telemetry.Enabled() {
		return false
	}
	dl := q.start.Add(q.timeout)
	n := len(q.fwd.Ext)
	mapping.AppendDeadline(&q.fwd, &q.dl, time.Until(dl))
	c.async.add(q)
	q.call.SetBatch(&c.batch) // on the connection's reader
	err := r.async.StartPolicy(&q.call, &q.fwd, dl, &r.Policy, q.asyncFn)
	if err != nil {
		c.async.remove(q)
		q.fwd.Ext = q.fwd.Ext[:n] // the worker appends its own ext 3
		return false
	}
	if c.ctx.Err() != nil {
		c.async.cancel() // aborted while q was being sent
	}
	return true
}

// asyncSet is a connection's requests started by startAsync and not yet
// called back (an intrusive list), so that abort cancels them as it
// cancels the workers' calls.
type asyncSet struct {
	mu   sync.Mutex
	head *request
}

func (s *asyncSet) add(q *request) {
	s.mu.Lock()
	q.anext, q.aprev = s.head, nil
	if s.head != nil {
		s.head.aprev = q
	}
	s.head = q
	s.mu.Unlock()
}

func (s *asyncSet) remove(q *request) {
	s.mu.Lock()
	if q.aprev != nil {
		q.aprev.anext = q.anext
	} else {
		s.head = q.anext
	}
	if q.anext != nil {
		q.anext.aprev = q.aprev
	}
	q.anext, q.aprev = nil, nil
	s.mu.Unlock()
}

// cancel cancels every request of the set still pending upstream; each
// completes (asyncDone) with a cancellation, as a worker's call does when
// the connection's context ends.
func (s *asyncSet) cancel() {
	s.mu.Lock()
	var ts []privconn.Ticket
	var gts []grpcdirect.Ticket
	for q := s.head; q != nil; q = q.anext {
		if q.gasync {
			gts = append(gts, q.gcall.Ticket())
			continue
		}
		ts = append(ts, q.call.Ticket())
	}
	s.mu.Unlock()
	for _, t := range ts {
		t.Cancel()
	}
	for _, t := range gts {
		t.Cancel()
	}
}

// asyncDone completes a request started by startAsync with the upstream's
// reply (valid only during the call) or error, as forward does after
// DoPolicy returns.
func (q *request) asyncDone(resp *codec.Frame, err error) {
	c, r := q.c, q.r
	c.async.remove(q)
	err = c.shutdownStatus(upstream.Status(c.ctx, err))
	r.release()
	elapsed := time.Since(q.start)
	q.count(r, countedAs(resp, err), elapsed)
	q.replyFrom(resp, err)
	blocked := c.replyNowIn(&q.out, q.call.ReplyBatch())
	q.out.Body = nil
	clear(q.out.Ext) // they alias the upstream connection's read buffer
	if blocked {
		go q.doneWhenQueued()
		return
	}
	q.done()
}

// doneWhenQueued frees q's slot once the connection's write queue is
// below its bound (or the connection failed).
func (q *request) doneWhenQueued() {
	c := q.c
	c.wmu.Lock()
	for c.flushing && len(c.wbuf) >= maxPendingWrite && c.werr == nil {
		c.wcond.Wait()
	}
	c.wmu.Unlock()
	q.done()
}

// replyNow encodes reply f of an in-flight request (its seq leaves the
// in-flight set) and writes it without blocking: one non-blocking attempt
// on the socket, the rest left to the coalescing writer (a goroutine of
// its own takes the flush when none is in progress). It reports whether
// the write queue is over its bound (the caller then holds its slot until
// it drains).
func (c *conn) replyNow(f *codec.Frame) (blocked bool) { return c.replyNowIn(f, nil) }

// replyNowIn is replyNow on a connection reader with write batch b (nil:
// none): the reply is encoded and its write left to b's flush while the
// buffer holds less than maxHeld (connio.Batch; FlushBatch writes it as
// replyNow would).
func (c *conn) replyNowIn(f *codec.Frame, batch *connio.Batch) (blocked bool) {
	c.loginReply(f)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	delete(c.seqs, f.Seq)
	if c.werr != nil {
		return false
	}
	c.takeWbufLocked()
	b, err := c.s.codec.Append(c.wbuf, f)
	if err != nil {
		// As reply: result 6 with why, or the failed reply's result with
		// a shortened message.
		if b, err = c.s.codec.Append(c.wbuf, mapping.Unencodable(f, err)); err != nil {
			return false
		}
	}
	c.wbuf = b
	if c.flushing {
		return len(c.wbuf) >= maxPendingWrite
	}
	if batch != nil && len(c.wbuf) < maxHeld {
		batch.Defer(c)
		return false
	}
	c.writeNowLocked()
	return false
}

// maxHeld bounds the replies a batch leaves in the write buffer.
const maxHeld = 32 << 10

// FlushBatch writes the replies batches left (connio.Flusher), as
// replyNow writes: one non-blocking attempt, the rest to the coalescing
// writer.
func (c *conn) FlushBatch() {
	c.wmu.Lock()
	if !c.flushing && c.werr == nil && len(c.wbuf) > 0 {
		c.writeNowLocked()
	}
	c.wmu.Unlock()
}

// writeNowLocked writes wbuf with one non-blocking attempt and leaves the
// rest to flushAsync (wmu held, no flush in progress).
func (c *conn) writeNowLocked() {
	c.armWrite()
	n, werr := c.writeNow(c.wbuf)
	if werr != nil {
		c.werr = werr
		c.end()
		_ = c.nc.Close()
		c.wcond.Broadcast()
		return
	}
	if n == len(c.wbuf) {
		putWbuf(c.wp, c.wbuf)
		c.wbuf, c.wp = nil, nil
		return
	}
	c.wbuf = c.wbuf[:copy(c.wbuf, c.wbuf[n:])]
	c.flushing = true
	go c.flushAsync()
	return
}

// flushAsync writes what replyNow left queued.
func (c *conn) flushAsync() {
	c.wmu.Lock()
	c.flushLocked()
	c.wmu.Unlock()
}

// writeNow writes b to the socket with one non-blocking attempt: the
// bytes the socket took (0 when it would block), or the socket's error.
// Called with wmu held and no flush in progress.
func (c *conn) writeNow(b []byte) (int, error) {
	c.wnow = b
	err := c.raw.Write(c.writeFn)
	c.wnow = nil
	n, errno := c.wnowN, c.wnowErr
	c.wnowN, c.wnowErr = 0, nil
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != nil:
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
	}
	return n, nil
}
