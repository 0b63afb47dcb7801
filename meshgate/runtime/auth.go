package runtime

import (
	"sync"

	"github.com/meshgate/meshgate/meshgate/inbound"
)

// replayShare is the replay cache every private listener of the runtime
// uses: a frame accepted on one listener is refused as a replay on any
// other listener with the same key, and a listener rebuilt or re-added by a
// reload forgets no nonce.
type replayShare struct {
	once sync.Once
	c    *inbound.ReplayCache
}

func (r *Runtime) replayCache() *inbound.ReplayCache {
	r.replay.once.Do(func() { r.replay.c = inbound.NewReplayCache() })
	return r.replay.c
}
