package runtime

import (
	"sync"
	"time"

	"github.com/meshgate/meshgate/meshgate/upstream"
)

// retiredSet holds the upstreams (either protocol) a reload dropped while
// they finish their in-flight calls: each closes after its last call, at the
// latest drain_timeout later (upstream.RetireWithin); close closes the rest
// at once (runtime shutdown).
type retiredSet struct {
	mu sync.Mutex
	m  map[upstream.Upstream]struct{}
}

func (s *retiredSet) retire(u upstream.Upstream, maxWait time.Duration) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[upstream.Upstream]struct{}{}
	}
	for r := range s.m { // forget the ones that closed
		select {
		case <-r.Done():
			delete(s.m, r)
		default:
		}
	}
	s.m[u] = struct{}{}
	s.mu.Unlock()
	upstream.RetireWithin(u, maxWait)
}

func (s *retiredSet) close() {
	s.mu.Lock()
	m := s.m
	s.m = nil
	s.mu.Unlock()
	for u := range m {
		_ = u.Close()
	}
}
