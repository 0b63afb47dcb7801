package upstream

import (
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
	for e, cn := range p.conns(uin) {
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
		return nil, p.picksFailed(lastErr)
	}
	return nil, fmt.Errorf("%w: %s", ErrNoHealthy, p.name)
}
