package inbound

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/grpcdirect"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// resilienceState is a request's part in package resilience: the
// listener admission it holds, and the state of its attempts.
type resilienceState struct {
	adm       *resilience.Admission
	attemptFn resilience.Attempt // q.attempt, bound once per pooled request
	callOpts  []grpc.CallOption
	err       error // the last attempt's error
	// dl: the deadline as a value (guardedUntil), the attempts started
	// with it on the direct transport (attemptStarter)
	dl    time.Time
	start attemptStarter
}

// attemptStarter is a gRPC target that starts one attempt of a Guard's
// call on an endpoint without waiting, the deadline a value
// (grpcpool.Pool on the direct transport).
type attemptStarter interface {
	StartAt(ctx context.Context, ep *resilience.Endpoint, method string, deadline time.Time, req, reply any, done func(error), opts ...grpc.CallOption) (grpcdirect.Ticket, bool)
}

// guardedUntil is guarded with the deadline dl as a value
// (resilience.Guard.DoUntil): ctx, the connection's, needs no timer, and
// each attempt is started on the direct transport with dl and waited for
// (attempt): no context, timer or AfterFunc per request. false: the
// route's target cannot (not the direct transport, or a hedged policy,
// which makes a context per attempt anyway): nothing done.
func (q *request) guardedUntil(ctx context.Context, dl time.Time, opts []grpc.CallOption) (bool, error) {
	r := q.r
	st, ok := r.Upstream.(attemptStarter)
	if !ok || !directTransport(r.Upstream) || r.Policy.Idempotent && r.Policy.HedgeDelay > 0 && r.Policy.MaxAttempts > 1 {
		return false, nil
	}
	if q.wdone == nil { // once per pooled request
		q.wdone, q.wdoneFn = make(chan error, 1), q.workerDone
	}
	q.res.callOpts, q.res.err, q.res.dl, q.res.start = opts, nil, dl, st
	_, err := r.Guard.DoUntil(ctx, dl, q.uin, &r.Policy, q.res.attemptFn)
	q.res.start = nil
	if err != nil {
		return true, resilience.Status(err) // nothing was sent
	}
	return true, q.res.err
}

// guarded runs a bridged gRPC call through the route's Guard: deadline
// check, circuit breaker, endpoint choice by adaptive weights, retries of
// idempotent routes under the retry budget. Attempts are sequential and
// share q.resp, q.header and q.trailer (reset before a retry).
func (q *request) guarded(ctx context.Context, opts []grpc.CallOption) error {
	q.res.callOpts, q.res.err = opts, nil
	if _, err := q.r.Guard.Do(ctx, q.uin, &q.r.Policy, q.res.attemptFn); err != nil {
		return resilience.Status(err) // nothing was sent
	}
	return q.res.err
}

// attempt is one try of a bridged call on endpoint ep.
func (q *request) attempt(ctx context.Context, ep *resilience.Endpoint, n int) resilience.Outcome {
	if n > 0 {
		q.resp.Free()
		q.clearMD()
	}
	if st := q.res.start; st != nil {
		return q.startAttempt(ctx, st, ep)
	}
	actx := ctx
	if directTransport(q.r.Upstream) {
		q.at.EP = ep // in q.opts: no context per attempt
	} else {
		actx = resilience.WithEndpoint(ctx, ep) // grpc-go's picker reads it there
	}
	err := q.r.Upstream.Invoke(actx, q.r.Method, &q.req, &q.resp, q.res.callOpts...)
	q.at.EP = nil
	q.res.err = err
	return resilience.ClassifyGRPC(ctx, err)
}

// startAttempt is attempt on the direct transport with the deadline as
// a value: the attempt is started on ep and waited for; ctx's end (the
// connection's) cancels it.
func (q *request) startAttempt(ctx context.Context, st attemptStarter, ep *resilience.Endpoint) resilience.Outcome {
	tk, ok := st.StartAt(ctx, ep, q.r.Method, q.res.dl, &q.req, &q.resp, q.wdoneFn, q.res.callOpts...)
	var err error
	if !ok {
		err = status.Error(codes.Internal, "inbound: not a direct gRPC upstream")
	} else {
		select {
		case err = <-q.wdone:
		case <-ctx.Done():
			tk.Cancel() // an attempt on the waiting path ends with ctx itself
			err = <-q.wdone
		}
	}
	q.res.err = err
	return resilience.ClassifyGRPC(ctx, err)
}

// replySwitch answers request f with the static reply of an off switch.
func (c *conn) replySwitch(f *codec.Frame, sw *resilience.Switch) {
	rp := &sw.Reply
	out := codec.Frame{Cmd: f.Cmd, Seq: f.Seq, UIN: f.UIN, Flags: codec.FlagResponse, Result: uint16(rp.Result), Body: rp.Body}
	var ext [1]codec.Ext
	if rp.Message != "" {
		ext[0] = codec.Ext{Key: codec.ExtErrorMsg, Value: []byte(rp.Message)}
		out.Ext = ext[:]
	}
	c.reply(&out)
}

// policyUntilDoer is a private target that takes the route's policy and
// the request's deadline as a value (upstream.PrivatePool.DoPolicyUntil).
type policyUntilDoer interface {
	DoPolicyUntil(ctx context.Context, deadline time.Time, req *codec.Frame, pol *resilience.Policy) (*codec.Frame, error)
}

// policyDoer is a private target that takes the route's resilience policy
// (upstream.PrivatePool).
type policyDoer interface {
	DoPolicy(ctx context.Context, req *codec.Frame, pol *resilience.Policy) (*codec.Frame, error)
}

// doPrivate sends req to the route's private upstream with the route's
// policy when the target takes one.
func (r *Route) doPrivate(ctx context.Context, req *codec.Frame) (*codec.Frame, error) {
	if pd, ok := r.Private.(policyDoer); ok {
		return pd.DoPolicy(ctx, req, &r.Policy)
	}
	return r.Private.Do(ctx, req)
}
