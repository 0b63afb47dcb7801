package inbound

import (
	"context"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// resilienceState is a request's part in package resilience: the
// listener admission it holds, and the state of its attempts.
type resilienceState struct {
	adm       *resilience.Admission
	attemptFn resilience.Attempt // q.attempt, bound once per pooled request
	callOpts  []grpc.CallOption
	err       error // the last attempt's error
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
