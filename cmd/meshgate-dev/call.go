package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/mapping"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

func init() {
	register(subcommand{Name: "call", Short: "send one request: `call mgp -addr A -cmd N` or `call grpc -addr A -method /pkg.Svc/M`", Run: callCmd})
}

// callCmd sends a single request either as an MGP/1 frame or as a raw-bytes
// unary gRPC call and prints the reply; the README's "send a request each
// way" uses it.
func callCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "mgp" && args[0] != "grpc") {
		return errors.New("usage: meshgate-dev call mgp|grpc [flags] (meshgate-dev call mgp -h)")
	}
	proto := args[0]
	fs := flag.NewFlagSet("call "+proto, flag.ContinueOnError)
	addr := fs.String("addr", "", "address to send to (default 127.0.0.1:7000 for mgp, 127.0.0.1:7001 for grpc)")
	cmd := fs.Uint("cmd", 1, "mgp: command id")
	method := fs.String("method", "/legacy.Legacy/Echo", "grpc: full method name")
	uin := fs.Uint64("uin", 0, "user id (mgp header field / x-mgp-uin metadata)")
	data := fs.String("data", "hello", "request body")
	caller := fs.String("caller", "meshgate-call", "caller name (ext 4 / x-mgp-caller)")
	timeout := fs.Duration("timeout", 3*time.Second, "deadline")
	keyID := fs.Uint("key-id", 0, "mgp: sign the frame (HMAC auth, ext 2) under this key id; the secret comes from $"+envKey)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if proto == "mgp" {
		if *addr == "" {
			*addr = "127.0.0.1:7000"
		}
		if *keyID != 0 {
			return callSigned(ctx, *addr, uint32(*keyID), codec.Frame{Cmd: uint32(*cmd), UIN: *uin, Body: []byte(*data), Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte(*caller)}}})
		}
		c, err := legacy.Dial(ctx, *addr, legacy.ClientOptions{})
		if err != nil {
			return err
		}
		defer c.Close()
		resp, err := c.Call(ctx, uint32(*cmd), *uin, []byte(*data), []codec.Ext{{Key: codec.ExtCaller, Value: []byte(*caller)}})
		if err != nil {
			return err
		}
		printReply(resp)
		return nil
	}
	if *addr == "" {
		*addr = "127.0.0.1:7001"
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, mapping.MDUIN, strconv.FormatUint(*uin, 10), mapping.MDCaller, *caller)
	req := []byte(*data)
	var resp []byte
	var hdr, trl metadata.MD
	err = cc.Invoke(ctx, *method, &req, &resp, grpc.Header(&hdr), grpc.Trailer(&trl))
	st := status.Convert(err)
	fmt.Printf("method=%s code=%s", *method, st.Code())
	if st.Message() != "" {
		fmt.Printf(" message=%q", st.Message())
	}
	if r := trl.Get(mapping.MDResult); len(r) > 0 {
		fmt.Printf(" %s=%s", mapping.MDResult, r[0])
	}
	fmt.Printf(" body=%q\n", resp)
	if err != nil {
		os.Exit(3)
	}
	return nil
}

// printReply prints a reply frame on one line; a result other than OK
// exits with status 3.
func printReply(resp *codec.Frame) {
	msg, _ := resp.ExtValue(codec.ExtErrorMsg)
	fmt.Printf("cmd=%d seq=%d uin=%d result=%d", resp.Cmd, resp.Seq, resp.UIN, resp.Result)
	if len(msg) > 0 {
		fmt.Printf(" message=%q", msg)
	}
	fmt.Printf(" body=%q\n", resp.Body)
	if resp.Result != codec.ResultOK {
		os.Exit(3)
	}
}
