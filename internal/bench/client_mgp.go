package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// ErrResult reports a reply with a non-zero MGP result.
var ErrResult = errors.New("bench: reply carries an error result")

// legacyClient sends MGP/1 echo requests over multiplexed privconn
// connections (each assigns its own seq and matches replies); every request
// waits for its reply in its own goroutine.
type legacyClient struct {
	conns []*privconn.Conn
	// ctx spans the client's life (see grpcClient).
	ctx    context.Context
	cancel context.CancelFunc
}

// DialLegacy opens n multiplexed MGP/1 connections to addr and checks each
// with one echo round trip.
func DialLegacy(addr string, n int) (Client, error) {
	c := &legacyClient{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cd := mgp.New(codec.DefaultMaxFrameSize)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		cn, err := privconn.Dial(ctx, addr, cd, privconn.Options{MaxInFlight: 1 << 16})
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bench: dial legacy %s: %w", addr, err)
		}
		c.conns = append(c.conns, cn)
		if err := echoOnce(ctx, cn, []byte("warm")); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bench: first echo via %s: %w", addr, err)
		}
	}
	return c, nil
}

func echoOnce(ctx context.Context, cn *privconn.Conn, payload []byte) error {
	resp, err := cn.Do(ctx, &codec.Frame{Cmd: EchoCmd, UIN: 42, Body: payload})
	if err != nil {
		return err
	}
	if resp.Result != 0 {
		msg, _ := resp.ExtValue(codec.ExtErrorMsg)
		return fmt.Errorf("%w %d %q", ErrResult, resp.Result, msg)
	}
	if len(resp.Body) != len(payload) {
		return fmt.Errorf("%w: %d != %d", ErrShortReply, len(resp.Body), len(payload))
	}
	return nil
}

func (c *legacyClient) Go(conn int, payload []byte, done func(error)) {
	cn := c.conns[conn%len(c.conns)]
	go func() { done(echoOnce(c.ctx, cn, payload)) }()
}

func (c *legacyClient) Close() error {
	c.cancel()
	return closeAll(c.conns)
}
