package inbound

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/internal/demo"
)

// gate answers by its body: "big" a 10,000-byte message; "md" and
// "md-fail" set response header and trailer extensions, then succeed or
// fail NOT_FOUND.
func gate(ctx context.Context, b []byte) ([]byte, error) {
	switch string(b) {
	case "big":
		return make([]byte, 10000), nil
	case "md", "md-fail":
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-mgp-ext-40000-bin", "h1", "x-mgp-ext-40000-bin", "h2", "other", "dropped"))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-mgp-ext-40001-bin", "t\x00"))
		if string(b) == "md-fail" {
			return nil, status.Error(codes.NotFound, "gone")
		}
		return []byte("ok"), nil
	}
	return b, nil
}

func extValues(f codec.Frame, k uint16) []string {
	var out []string
	for _, x := range f.Ext {
		if x.Key == k {
			out = append(out, string(x.Value))
		}
	}
	return out
}

// TestLongStatusMessage: a status message far over the 4 KiB header keeps
// its code (NOT_FOUND → result 8) and arrives cut on a UTF-8 boundary.
// Before: result 9 with no message.
func TestLongStatusMessage(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.dial()
	msg := strings.Repeat("€", 1700) // 5,100 bytes
	r, _ := cl.call(codec.Frame{Cmd: cmdFail, Body: []byte("5 " + msg)})
	got := errMsg(r)
	if r.Result != codec.ResultNotFound || !utf8.ValidString(got) || len(got) < 3500 || !strings.HasPrefix(msg, got) {
		t.Fatalf("result %d, message of %d bytes (valid UTF-8 %v)", r.Result, len(got), utf8.ValidString(got))
	}
}

// TestReplyOverFrameLimit: a gRPC response that fits gRPC but not the
// listener's frame limit is answered with result 6 and a message saying
// why; the connection keeps serving. Before: result 9 with no message.
func TestReplyOverFrameLimit(t *testing.T) {
	e := newEnv(t, envOpts{maxFrame: 4096, extra: map[string]demo.Handler{"Gate": gate}})
	cl := e.dial()
	r, _ := cl.call(codec.Frame{Cmd: cmdGate, Body: []byte("big")})
	if r.Result != codec.ResultOverloaded || !strings.Contains(errMsg(r), "frame limit") || len(r.Body) != 0 {
		t.Fatalf("result %d message %q body %d bytes", r.Result, errMsg(r), len(r.Body))
	}
	if r, _ := cl.call(codec.Frame{Cmd: cmdEcho, Body: []byte("still here")}); r.Result != 0 || string(r.Body) != "still here" {
		t.Fatalf("after: result %d body %q", r.Result, r.Body)
	}
}

// TestResponseMetadataToExtensions: x-mgp-ext-<k>-bin response headers and
// trailers become reply extensions, repeated values kept, on success and
// on failure; other metadata has no frame field. Before: all dropped.
func TestResponseMetadataToExtensions(t *testing.T) {
	e := newEnv(t, envOpts{extra: map[string]demo.Handler{"Gate": gate}})
	cl := e.dial()
	for body, result := range map[string]uint16{"md": codec.ResultOK, "md-fail": codec.ResultNotFound} {
		r, _ := cl.call(codec.Frame{Cmd: cmdGate, Body: []byte(body)})
		if r.Result != result {
			t.Errorf("%s: result %d", body, r.Result)
		}
		if h := extValues(r, 40000); strings.Join(h, ",") != "h1,h2" {
			t.Errorf("%s: ext 40000 = %q", body, h)
		}
		if tr := extValues(r, 40001); len(tr) != 1 || tr[0] != "t\x00" {
			t.Errorf("%s: ext 40001 = %q", body, tr)
		}
		for _, x := range r.Ext {
			if x.Key != 40000 && x.Key != 40001 && x.Key != codec.ExtErrorMsg {
				t.Errorf("%s: unexpected ext %d", body, x.Key)
			}
		}
	}
}
