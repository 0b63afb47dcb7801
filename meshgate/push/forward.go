package push

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/mapping"
)

// MDPushCmd is the metadata key carrying a forwarded push's cmd.
const MDPushCmd = "x-mgp-push-cmd"

// Invoker makes a unary gRPC call (a *grpc.ClientConn, a grpc pool) with
// raw-bytes messages.
type Invoker interface {
	Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error
}

// Forwarder takes the PUSH frames a private upstream sends on its pooled
// connections (upstreams[].push). Handle is called on the connection's read
// goroutine and never blocks.
type Forwarder struct {
	label string // metrics listener label: "upstream:<name>"
	m     *Metrics
	log   *slog.Logger

	// to: downstream
	d Deliverer

	// to: grpc
	inv     Invoker
	method  string
	timeout time.Duration
	sem     chan struct{}
	opts    []grpc.CallOption
}

// ToDownstream returns a Forwarder delivering upstream's pushes to the uin's
// downstream connections in d.
func ToDownstream(upstream string, d Deliverer, m *Metrics) *Forwarder {
	return &Forwarder{label: "upstream:" + upstream, m: m, d: d}
}

// ToGRPC returns a Forwarder calling method through inv with each push's
// body as the request (fire-and-forget: the response is discarded), at
// most maxConcurrent calls at once: a push arriving beyond that is dropped
// and counted (outcome "dropped"). The call carries x-mgp-uin,
// x-mgp-push-cmd, traceparent, x-mgp-caller and x-mgp-ext-<k>-bin as a
// bridged request does.
func ToGRPC(upstream string, inv Invoker, method string, timeout time.Duration, maxConcurrent int, m *Metrics, log *slog.Logger, opts ...grpc.CallOption) *Forwarder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if maxConcurrent < 1 {
		maxConcurrent = 1
	}
	return &Forwarder{label: "upstream:" + upstream, m: m, log: log, inv: inv, method: method, timeout: timeout,
		sem: make(chan struct{}, maxConcurrent), opts: opts}
}

// Handle forwards push frame f. f aliases the connection's read buffer and
// is not retained past the call.
func (w *Forwarder) Handle(f *codec.Frame) {
	if w.d != nil {
		_, err := w.d.Deliver(f.UIN, f)
		w.m.Inc(w.label, f.Cmd, outcomeOf(err))
		return
	}
	select {
	case w.sem <- struct{}{}:
	default:
		w.m.Inc(w.label, f.Cmd, OutcomeDropped)
		return
	}
	md := mapping.NewRequestMD()
	md.FromFrame(f, 0, false)
	md.MD[MDPushCmd] = []string{strconv.FormatUint(uint64(f.Cmd), 10)}
	body := append([]byte(nil), f.Body...)
	cmd := f.Cmd
	release := func() {}
	if a, ok := w.inv.(acquirer); ok {
		if !a.Acquire() { // retired by a reload; the next commit repoints the sink
			<-w.sem
			w.m.Inc(w.label, f.Cmd, OutcomeDropped)
			return
		}
		release = a.Release
	}
	go func() {
		defer func() {
			release()
			<-w.sem
		}()
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md.MD), w.timeout)
		defer cancel()
		var resp []byte
		if err := w.inv.Invoke(ctx, w.method, body, &resp, w.opts...); err != nil {
			w.m.Inc(w.label, cmd, OutcomeFailed)
			w.log.Debug("forwarded push failed", "method", w.method, "cmd", cmd, "err", err)
			return
		}
		w.m.Inc(w.label, cmd, OutcomeOK)
	}()
}

// acquirer is an upstream whose retirement waits for the calls it let in
// (grpcpool.Pool).
type acquirer interface {
	Acquire() bool
	Release()
}

// InFlight returns the gRPC calls in flight (0 for to: downstream).
func (w *Forwarder) InFlight() int { return len(w.sem) }

func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrNotConnected):
		return OutcomeNotFound
	case errors.Is(err, ErrFull):
		return OutcomeExhausted
	default:
		return OutcomeFailed
	}
}
