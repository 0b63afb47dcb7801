package runtime

import (
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept (and answer) gzip-compressed calls; the raw codec sees decompressed bytes

	"github.com/meshgate/meshgate/meshgate/config"
)

// listenerMsgOptions are a grpc listener's message limits
// (listeners[].max_recv_msg_size / max_send_msg_size, default 4 MiB).
func listenerMsgOptions(lc *config.Listener) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(lc.RecvSize()), grpc.MaxSendMsgSize(lc.SendSize())}
}

// upstreamDialOptions are a gRPC upstream's message limits
// (upstreams[].max_recv_msg_size / max_send_msg_size, default 4 MiB) and,
// with telemetry.grpc_metrics, grpc-go's OpenTelemetry instrumentation.
func (r *Runtime) upstreamDialOptions(u *config.Upstream) []grpc.DialOption {
	return append(r.gm.DialOptions(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(u.RecvSize()), grpc.MaxCallSendMsgSize(u.SendSize())))
}

// sameMsgLimits reports whether two listener configs have the same gRPC
// message limits (server options are fixed when the server is built).
func sameMsgLimits(a, b *config.Listener) bool {
	return a.RecvSize() == b.RecvSize() && a.SendSize() == b.SendSize()
}

// sameUpstreamLimits reports whether upstream u had the same message
// limits in the old config (a pool is rebuilt when they change).
func sameUpstreamLimits(old *config.Config, u config.Upstream) bool {
	if old == nil {
		return true
	}
	for i := range old.Upstreams {
		if o := &old.Upstreams[i]; o.Name == u.Name {
			return o.RecvSize() == u.RecvSize() && o.SendSize() == u.SendSize()
		}
	}
	return true
}
