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
// connections (each assigns its own seq and matches replies). A request is
// written by the goroutine that fires it (privconn's Start) and completed by
// the connection's reader: no goroutine and no channel per request, so the
// load generator's own wake-ups (which share the machine's cores with the
// processes it measures) are one timer wake-up per send and one socket
// wake-up per reply burst.
type legacyClient struct {
	conns []*privconn.Conn
}

// DialLegacy opens n multiplexed MGP/1 connections to addr and checks each
// with one echo round trip.
func DialLegacy(addr string, n int) (Client, error) {
	c := &legacyClient{}
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
	return checkEcho(resp, err, payload)
}

// checkEcho is the verdict on one echo: resp must carry result 0 and a body
// of payload's length.
func checkEcho(resp *codec.Frame, err error, payload []byte) error {
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
	req := &codec.Frame{Cmd: EchoCmd, UIN: 42, Body: payload}
	// No deadline: a reply that never comes is counted by the measurement's
	// drain; a closed connection completes the request with its error.
	err := cn.Start(req, time.Time{}, func(resp *codec.Frame, err error) {
		done(checkEcho(resp, err, payload))
	})
	if err != nil {
		done(err)
	}
}

func (c *legacyClient) Close() error {
	return closeAll(c.conns)
}
