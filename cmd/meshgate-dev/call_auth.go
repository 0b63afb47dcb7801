package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// envKey holds the secret for `call mgp -key-id N` (not a flag, so it stays
// out of the process list and shell history).
const envKey = "MESHGATE_KEY"

// callSigned sends f as one MGP/1 request signed under keyID (HMAC auth
// extension, current time, random nonce) and prints the reply like the
// unsigned call.
func callSigned(ctx context.Context, addr string, keyID uint32, f codec.Frame) error {
	secret := os.Getenv(envKey)
	if secret == "" {
		return fmt.Errorf("call mgp -key-id %d: set $%s to the key's secret", keyID, envKey)
	}
	var nb [8]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return err
	}
	f.Seq = 1
	c := mgp.New(0)
	raw, err := c.Sign(nil, &f, keyID, []byte(secret), uint64(time.Now().UnixMilli()), binary.BigEndian.Uint64(nb[:]))
	if err != nil {
		return err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := nc.Write(raw); err != nil {
		return err
	}
	var resp codec.Frame
	if err := codec.NewReader(nc, c, 4096).ReadFrame(&resp); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no reply from %s: %w", addr, err)
		}
		return err
	}
	printReply(&resp)
	return nil
}
