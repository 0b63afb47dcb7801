package upstream

import (
	"errors"
	"fmt"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/stream"
)

// OpenStream starts a stream exchange of cmd for uin on a connection the
// balancer picks (docs/push-streams.md); ext goes with its first frame.
func (p *PrivatePool) OpenStream(cmd uint32, uin uint64, ext []codec.Ext, lim stream.Limits) (*privconn.Stream, error) {
	if p.ctx.Err() != nil {
		return nil, ErrPoolClosed
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		e := p.pick(uin)
		if e == nil {
			break
		}
		cn, ok := e.conn()
		if !ok {
			continue
		}
		s, err := cn.OpenStream(cmd, uin, ext, lim)
		if err == nil {
			// An open stream counts as a request in flight on its
			// endpoint (least_request), until it ends.
			e.begin()
			s.OnEnd(e.res.Hold())
			return s, nil
		}
		lastErr = err
	}
	if lastErr != nil {
		if errors.Is(lastErr, privconn.ErrTooManyInFlight) {
			return nil, fmt.Errorf("%w: %s: %w", ErrOverloaded, p.name, lastErr)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrNoHealthy, p.name, lastErr)
	}
	return nil, fmt.Errorf("%w: %s", ErrNoHealthy, p.name)
}
