package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// Call is one asynchronous request of a PrivatePool (StartPolicy). Keep
// it in the request's own state and reuse it once its callback has run:
// the method values it needs are bound on its first use only.
type Call struct {
	p    *PrivatePool
	a    resilience.Async
	e    *Endpoint
	req  *codec.Frame
	dl   time.Time
	last error
	done func(resp *codec.Frame, err error)
	h    privconn.Handle // the attempt in flight, for Ticket
	rb   *connio.Batch   // the completing reader's batch (ReplyBatch)
	wb   *connio.Batch   // SetBatch's, for the next send

	sendFn  resilience.Send
	replyFn func(resp *codec.Frame, err error)
}

// StartPolicy is DoPolicy without waiting: it sends req by route policy
// pol through the Guard (deadline check, circuit breaker and adaptive
// limit, the endpoint by adaptive weights, another endpoint when the
// request could not be written) with privconn.Conn.Start, and returns.
// done is then called exactly once with what DoPolicy would have
// returned: the reply (valid only during the call: it aliases the
// connection's read buffer) or the error, wrapped as DoPolicy wraps it.
// It runs on the upstream connection's reader, on the connection's
// deadline timer, or on the caller's goroutine before StartPolicy returns
// (a request refused or failed before it was sent), and must not block.
//
// deadline (zero: none) bounds the wait for the reply (privconn.Conn.Start
// documents its granularity). Every per-endpoint record is DoPolicy's: the
// Guard's in-flight count, latency and ejection feedback, and the
// endpoint's request and failure counters.
//
// A request StartPolicy cannot run without waiting — a policy with
// retries or hedging, or a circuit breaker that would queue it — gets
// resilience.ErrWouldWait with nothing done: send it with DoPolicy. The
// endpoint sink of WithEndpointSink is not reported (no context).
func (p *PrivatePool) StartPolicy(c *Call, req *codec.Frame, deadline time.Time, pol *resilience.Policy, done func(resp *codec.Frame, err error)) error {
	if pol.MaxAttempts > 1 || pol.HedgeDelay > 0 {
		c.wb = nil
		return resilience.ErrWouldWait
	}
	if c.sendFn == nil {
		c.sendFn, c.replyFn = c.send, c.reply
	}
	c.rb = nil
	if p.ctx.Err() != nil {
		done(nil, ErrPoolClosed)
		return nil
	}
	c.p, c.req, c.dl, c.done, c.last = p, req, deadline, done, nil
	n, sent, err := p.guard.Start(req.UIN, pol, deadline, &c.a, c.sendFn)
	if sent {
		return nil // c belongs to the reply now
	}
	if errors.Is(err, resilience.ErrWouldWait) {
		c.reset()
		return err
	}
	if err == nil && n >= 0 {
		err = p.notSent(c.last)
	} else {
		err = p.refused(err)
	}
	c.reset()
	done(nil, err)
	return nil
}

// SetBatch makes the next StartPolicy leave its request's write to batch
// b, the write batch of the caller's connection reader (connio.Batch),
// which the caller flushes. StartPolicy consumes it (the call may
// complete, and its owner be reused, before StartPolicy returns): set it
// before each call, never clear it after.
func (c *Call) SetBatch(b *connio.Batch) { c.wb = b }

// ReplyBatch is, during StartPolicy's callback with a reply, the write
// batch of the upstream connection's reader that runs it (nil otherwise):
// the callback may leave the write of its answer to it.
func (c *Call) ReplyBatch() *connio.Batch { return c.rb }

// Ticket names the call's attempt in flight (zero when none), for
// cancelling it from another goroutine: Ticket().Cancel() completes the
// call with an error wrapping context.Canceled if it is still pending.
// A ticket taken while the call is known to be in flight (not yet called
// back) names this call; a stale ticket cancels nothing.
func (c *Call) Ticket() privconn.Ticket { return c.h.Ticket() }

// send is the Guard's Send: one attempt on ep's endpoint.
func (c *Call) send(ge *resilience.Endpoint, _ int) bool {
	p := c.p
	e := p.eps[ge.Index()]
	c.e = e
	cn, ok := e.conn()
	if !ok {
		c.last = fmt.Errorf("%w: %s: endpoint %s has no live connection", ErrNoHealthy, p.name, e.addr)
		return false
	}
	e.begin()
	c.h.Batch, c.wb = c.wb, nil // read by StartHandle only
	err := cn.StartHandle(c.req, c.dl, &c.h, c.replyFn)
	if err == nil {
		return true // c belongs to the reply now
	}
	if errors.Is(err, privconn.ErrNotSent) || errors.Is(err, privconn.ErrTooManyInFlight) {
		e.end(err)
		c.last = err
		return false
	}
	// Refused or failed as sent (deadline passed, frame not encodable,
	// write failed): the attempt ends here, as DoPolicy's.
	c.reply(nil, err)
	return true
}

// reply ends the attempt in flight with the reply or error of its
// connection, and calls the request's callback.
func (c *Call) reply(resp *codec.Frame, err error) {
	p, e, done := c.p, c.e, c.done
	c.rb = c.h.ReplyBatch()
	e.end(err)
	var o resilience.Outcome
	switch {
	case err == nil:
		e.count(resultCode(resp.Result))
		o = resilience.ClassifyResult(resp.Result)
	default:
		code := status.Code(Status(context.Background(), err))
		if errors.Is(err, context.Canceled) {
			code = codes.Canceled // Ticket().Cancel(): the caller gave up
		}
		e.count(code)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			o = resilience.Timeout
		case errors.Is(err, context.Canceled):
			o = resilience.Cancelled
		default:
			o = resilience.ConnectFailure
		}
		err = p.wrap(e, err)
	}
	c.a.Finish(o)
	c.reset()
	done(resp, err)
}

func (c *Call) reset() {
	c.p, c.e, c.req, c.done, c.last, c.wb = nil, nil, nil, nil, nil, nil
	c.dl = time.Time{}
}

// notSent is DoPolicy's error for a request none of whose attempts could
// be sent (last: the last attempt's error).
func (p *PrivatePool) notSent(last error) error {
	switch {
	case errors.Is(last, privconn.ErrTooManyInFlight):
		return fmt.Errorf("%w: %s: %w", ErrOverloaded, p.name, last)
	case errors.Is(last, ErrNoHealthy):
		return last
	}
	return fmt.Errorf("%w: %s: %w", ErrNoHealthy, p.name, last)
}

// refused is DoPolicy's error for a request the Guard did not send.
func (p *PrivatePool) refused(err error) error {
	switch {
	case errors.Is(err, resilience.ErrNoEndpoint):
		p.m.noHealthy.Inc()
		return fmt.Errorf("%w: %s (%d endpoints, none available)", ErrNoHealthy, p.name, len(p.eps))
	case errors.Is(err, resilience.ErrDeadline):
		return fmt.Errorf("upstream %s: %w: %w", p.name, err, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w: %s: %w", ErrOverloaded, p.name, err)
}
