package runtime

import "github.com/meshgate/meshgate/meshgate/inbound"

// replay returns the replay cache of the private listener l (nil when l is
// nil or not private), for the listener that replaces it on a reload: a
// nonce accepted before the reload stays remembered after it.
func (l *listener) replay() *inbound.ReplayCache {
	if l == nil || l.in == nil {
		return nil
	}
	return l.in.Replay()
}
