package grpcpool

import (
	"context"

	"google.golang.org/grpc"
)

// NewStream opens a stream call on the next ClientConn (stream routes;
// docs/push-streams.md).
func (p *Pool) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return p.Conn().NewStream(ctx, desc, method, opts...)
}
