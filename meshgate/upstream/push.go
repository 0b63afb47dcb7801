package upstream

import "github.com/meshgate/meshgate/codec"

// WithPushHandler hands every PUSH frame an endpoint sends on the pool's
// connections to h (upstreams[].push; docs/push-streams.md). h runs on the
// connection's read goroutine, must not block and must not keep f, which
// aliases the read buffer. Without it pushes are dropped.
func WithPushHandler(h func(f *codec.Frame)) Option {
	return func(o *poolOptions) { o.onPush = h }
}
