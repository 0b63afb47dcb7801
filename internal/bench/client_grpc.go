package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// ErrShortReply reports a reply whose size does not match the request (the
// echo services return the payload unchanged).
var ErrShortReply = errors.New("bench: reply size differs from request")

// grpcClient is an async unary gRPC client: each request runs in its own
// goroutine, so the open-loop scheduler never waits.
type grpcClient struct {
	conns  []*grpc.ClientConn
	method string
	// ctx spans the client's life: Close cancels it, failing whatever is
	// still in flight (no per-request timer on the hot path; the suite's
	// drain accounts for replies that never come).
	ctx    context.Context
	cancel context.CancelFunc
}

// DialGRPC connects n HTTP/2 connections (one grpc.ClientConn each) to addr
// and calls method with raw-bytes messages.
func DialGRPC(addr, method string, n int) (Client, error) {
	c := &grpcClient{method: method}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for i := 0; i < n; i++ {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bench: dial gRPC %s: %w", addr, err)
		}
		cc.Connect()
		c.conns = append(c.conns, cc)
	}
	// Establish every connection before the clock starts.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cc := range c.conns {
		var resp []byte
		if err := cc.Invoke(ctx, method, []byte("warm"), &resp, grpc.WaitForReady(true)); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bench: first gRPC call to %s: %w", addr, err)
		}
	}
	return c, nil
}

func (c *grpcClient) Go(conn int, payload []byte, done func(error)) {
	cc := c.conns[conn%len(c.conns)]
	go func() {
		var resp []byte
		err := cc.Invoke(c.ctx, c.method, payload, &resp)
		if err == nil && len(resp) != len(payload) {
			err = fmt.Errorf("%w: %d != %d", ErrShortReply, len(resp), len(payload))
		}
		done(err)
	}()
}

func (c *grpcClient) Close() error {
	c.cancel()
	return closeAll(c.conns)
}
