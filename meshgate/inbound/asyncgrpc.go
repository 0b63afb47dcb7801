package inbound

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/grpcpool"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// Private → gRPC requests completed on the I/O goroutines.
//
// A bridged request to a gRPC upstream on the direct transport, under
// the same conditions as the private case (async.go: a one-attempt
// route, no shadow, not oneway, a plain TCP client, telemetry off; no
// JSON body transcoding), is
// started by the connection's reader itself (grpcpool.Pool.StartPolicy:
// the Guard's admission, endpoint choice and accounting, then
// grpcdirect.Endpoint.Start writes the HTTP/2 frames); the goroutine that
// reads the response (the HTTP/2 connection's reader) builds the reply
// frame exactly as a worker's run does — the request's metadata and
// deadline from package mapping (the deadline is sent as grpc-timeout),
// the reply from mapping.ReplyFrame and the table's metadata map, the
// same metrics — and writes it with replyNow. Abort cancels it through
// the connection's asyncSet.

// grpcStarter is a gRPC target that starts calls without waiting
// (grpcpool.Pool).
type grpcStarter interface {
	StartPolicy(ctx context.Context, c *grpcpool.DirectCall, method string, key uint64, deadline time.Time, pol *resilience.Policy, req, reply any, done func(error), opts ...grpc.CallOption) error
	Guard() *resilience.Guard
}

// asyncGRPCRoute resolves whether a gRPC route's requests may complete on
// the I/O goroutines: its target starts calls through the route's own
// Guard (the worker path calls through r.Guard too).
func (r *Route) asyncGRPCRoute() {
	r.gasync = nil
	if r.Stream != "" || r.Policy.MaxAttempts > 1 || r.Policy.HedgeDelay > 0 || r.Private != nil || r.Guard == nil {
		return
	}
	if gs, ok := r.Upstream.(grpcStarter); ok && gs.Guard() == r.Guard {
		r.gasync = gs
	}
}

// startAsyncGRPC starts bridged request q from the connection's reader;
// false (nothing done) when q must go to a worker instead.
func (q *request) startAsyncGRPC() bool {
	c, r := q.c, q.r
	// A route with a JSON body (transcoding) stays on the workers.
	if r.gasync == nil || r.mig != nil || r.Body != nil || q.oneway || c.raw == nil || c.s.opts.Telemetry.Enabled() {
		return false
	}
	if q.gasyncFn == nil {
		q.gasyncFn = q.asyncGRPCDone // bound once per pooled request
	}
	q.gasync = true
	c.async.add(q)
	q.gcall.SetBatch(&c.batch) // on the connection's reader
	// The metadata goes from q.md straight into HPACK (q.opts:
	// grpcdirect.OutgoingMD); the deadline is a value, enforced by the
	// HTTP/2 connection's one timer: the call needs no context of its own.
	err := r.gasync.StartPolicy(c.ctx, &q.gcall, r.Method, q.uin, q.start.Add(q.timeout), &r.Policy, &q.req, &q.resp, q.gasyncFn, q.opts...)
	if err != nil {
		c.async.remove(q)
		q.gasync = false
		return false
	}
	if c.ctx.Err() != nil {
		c.async.cancel() // aborted while q was being sent
	}
	return true
}

// asyncGRPCDone completes a request started by startAsyncGRPC with the
// call's error (nil: q.resp, q.header and q.trailer hold the answer), as
// run does after the call returns.
func (q *request) asyncGRPCDone(err error) {
	c, r := q.c, q.r
	c.async.remove(q)
	q.gasync = false
	body, err := q.replyBody(c.shutdownStatus(err))
	r.Upstream.Release()
	elapsed := time.Since(q.start)
	// Count before answering: whoever sees the reply sees it counted.
	q.count(r, err, elapsed)
	q.out = codec.Frame{Cmd: q.cmd, Seq: q.seq, UIN: q.uin, Flags: codec.FlagResponse, Ext: q.out.Ext[:0]}
	mapping.ReplyFrame(&q.out, body, err, q.header, q.trailer)
	q.mm.ReplyFromMD(&q.out, q.header, q.trailer)
	if err != nil && c.s.log.Enabled(context.Background(), slog.LevelDebug) {
		c.s.log.Debug("upstream call failed", "method", r.Method, "err", err)
	}
	if c.replyNowIn(&q.out, q.gcall.ReplyBatch()) {
		go q.doneWhenQueued()
		return
	}
	q.done()
}

// waitDirect makes bridged request q's call on a worker as the I/O
// goroutines start theirs (grpcpool.Pool.StartPolicy: the Guard's
// admission, endpoint choice and accounting, the deadline dl a value
// enforced by the HTTP/2 connection's timer) and waits for its
// completion: no context, deadline timer or AfterFunc per request. A
// route the I/O goroutines could take but a request that may not (a TLS
// client, telemetry on, a shadow copy, a JSON body, oneway) thus costs
// no more than there. The connection's end cancels the call (its
// ticket; an attempt on grpcdirect's waiting path by its context,
// c.ctx). waited false: nothing done, the call needs the context path (a
// route with retries or hedging, not the direct transport, a breaker
// that would queue it).
func (q *request) waitDirect(dl time.Time, opts []grpc.CallOption) (waited bool, err error) {
	c, r := q.c, q.r
	if r.gasync == nil {
		return false, nil
	}
	if q.wdone == nil { // once per pooled request
		q.wdone, q.wdoneFn = make(chan error, 1), q.workerDone
	}
	q.gcall.SetBatch(nil) // a worker: the request is written at once
	if r.gasync.StartPolicy(c.ctx, &q.gcall, r.Method, q.uin, dl, &r.Policy, &q.req, &q.resp, q.wdoneFn, opts...) != nil {
		return false, nil
	}
	select {
	case err = <-q.wdone:
	case <-c.ctx.Done():
		q.gcall.Ticket().Cancel()
		err = <-q.wdone
	}
	return true, err
}

// workerDone is the completion of a call waitDirect waits for.
func (q *request) workerDone(err error) { q.wdone <- err }
