package runtime

import (
	goruntime "runtime"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept (and answer) gzip-compressed calls; the raw codec sees decompressed bytes

	"github.com/meshgate/meshgate/meshgate/config"
)

// listenerMsgOptions are a grpc listener's message limits
// (listeners[].max_recv_msg_size / max_send_msg_size, default 4 MiB).
func listenerMsgOptions(lc *config.Listener) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(lc.RecvSize()), grpc.MaxSendMsgSize(lc.SendSize())}
}

// Per-connection buffers of a grpc listener. grpc-go's default is a 32 KB
// read buffer per connection, allocated for the connection's whole life
// (the write buffer comes from a shared pool and is returned after each
// flush): most of the memory of an idle gRPC connection. 4 KB holds every
// frame of a small call; a frame larger than the buffer is read straight
// into its destination (bufio reads past the buffer), so large messages
// cost no extra syscalls.
const listenerReadBuffer = 4 << 10

// listenerWorkers is how many of grpc-go's stream workers a grpc listener
// keeps per CPU: a call is handed to an idle worker goroutine, whose stack
// has already grown to what a bridged call needs, instead of a new
// goroutine that grows its stack (copying it) on every call. When every
// worker is busy grpc-go starts a goroutine for the call, as without them.
const listenerWorkers = 4

// listenerTransportOptions tune a grpc listener's HTTP/2 transports and
// call dispatch.
func listenerTransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ReadBufferSize(listenerReadBuffer),
		grpc.NumStreamWorkers(uint32(listenerWorkers * goruntime.GOMAXPROCS(0))),
	}
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
