package outbound

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/resilience"
)

// switchReply answers a call of a switched-off route with the switch's
// static reply: its body with OK (result 0), or the status its result maps
// to (PROTOCOL.md) with its message. The upstream is not called.
func switchReply(stream grpc.ServerStream, sw *resilience.Switch) error {
	rp := &sw.Reply
	if rp.Result == 0 {
		return stream.SendMsg(rp.Body)
	}
	code, _ := codec.GRPCCode(uint16(rp.Result))
	return status.Error(codes.Code(code), rp.Message)
}
