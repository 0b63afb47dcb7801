package grpcdirect

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// gzipBackend answers Zip with n bytes (n from the request's first two
// bytes, in KiB), gzip-compressed: grpc.SetSendCompressor fails unless the
// client announced gzip in grpc-accept-encoding. Enc reports the request's
// grpc-accept-encoding.
func gzipBackend(t *testing.T) *backend {
	return startBackend(t, "127.0.0.1:0", map[string]demo.Handler{
		"Zip": func(ctx context.Context, req []byte) ([]byte, error) {
			if err := grpc.SetSendCompressor(ctx, "gzip"); err != nil {
				return nil, status.Errorf(codes.FailedPrecondition, "client does not accept gzip: %v", err)
			}
			n := (int(req[0])<<8 | int(req[1])) << 10
			return bytes.Repeat([]byte("meshgate "), n/9+1)[:n], nil
		},
		"Enc": func(ctx context.Context, _ []byte) ([]byte, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			return []byte(md.Get("grpc-accept-encoding")[0]), nil
		},
	})
}

// TestGzipResponse: the direct transport announces gzip as grpc-go's client
// does, and a gzip-compressed reply is decompressed to the same bytes
// grpc-go's client gets.
func TestGzipResponse(t *testing.T) {
	b := gzipBackend(t)
	e := newEP(t, Config{Addr: b.addr})
	cc, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var enc, grpcgoEnc rawcodec.Message
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Enc", []byte{}, &enc); err != nil {
		t.Fatal(err)
	}
	if err := cc.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Enc", []byte{}, &grpcgoEnc); err != nil {
		t.Fatal(err)
	}
	if string(enc.Bytes()) != string(grpcgoEnc.Bytes()) {
		t.Errorf("grpc-accept-encoding %q, grpc-go sends %q", enc.Bytes(), grpcgoEnc.Bytes())
	}
	for _, kib := range []int{0, 1, 64, 3 << 10} {
		req := []byte{byte(kib >> 8), byte(kib)}
		var got, want rawcodec.Message
		if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Zip", req, &got); err != nil {
			t.Fatalf("%d KiB: %v", kib, err)
		}
		if err := cc.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Zip", req, &want); err != nil {
			t.Fatalf("grpc-go %d KiB: %v", kib, err)
		}
		if got.Len() != kib<<10 || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%d KiB: got %d bytes, grpc-go %d", kib, got.Len(), want.Len())
		}
		got.Free()
		want.Free()
	}
}

// TestGzipLimit: the receive limit applies to the decompressed message (a
// reply of 2 MiB compressed to a few KiB against a 1 MiB limit), with
// grpc-go's code and message; the connection keeps serving.
func TestGzipLimit(t *testing.T) {
	b := gzipBackend(t)
	const limit = 1 << 20
	e := newEP(t, Config{Addr: b.addr, MaxRecvMsgSize: limit})
	cc, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{}), grpc.MaxCallRecvMsgSize(limit)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	req := []byte{2048 >> 8, 2048 & 0xff} // 2 MiB
	var r1, r2 rawcodec.Message
	got := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Zip", req, &r1)
	want := cc.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Zip", req, &r2)
	if status.Code(want) != codes.ResourceExhausted {
		t.Fatalf("grpc-go: %v", want)
	}
	if status.Code(got) != status.Code(want) || status.Convert(got).Message() != status.Convert(want).Message() {
		t.Fatalf("got %v, grpc-go %v", got, want)
	}
	var ok rawcodec.Message
	if err := e.Invoke(ctxT(t, 5*time.Second), "/"+svc+"/Zip", []byte{0, 1}, &ok); err != nil || ok.Len() != 1<<10 {
		t.Fatalf("after the limit: %d bytes, %v", ok.Len(), err)
	}
	ok.Free()
}
