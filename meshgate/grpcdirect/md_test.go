package grpcdirect

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// TestOutgoingMDAndStore: with the OutgoingMD option the request metadata
// is the option's map (the context's is not sent), and with an MDStore the
// grpc.Header and grpc.Trailer targets are refilled in place, call after
// call, on Invoke and on Start: a key the last response had and this one
// has not is gone, values are this response's, a trailers-only failure
// leaves no header, and the maps are the caller's own (not replaced).
func TestOutgoingMDAndStore(t *testing.T) {
	b := startBackend(t, "127.0.0.1:0", map[string]demo.Handler{"Meta": func(ctx context.Context, _ []byte) ([]byte, error) {
		in, _ := metadata.FromIncomingContext(ctx)
		v := in.Get("x-req")
		if len(v) != 1 || len(in.Get("x-ctx")) != 0 {
			return nil, status.Errorf(codes.InvalidArgument, "request metadata %v", in)
		}
		if v[0] == "fail" {
			return nil, status.Error(codes.NotFound, "no such "+v[0])
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs("h-"+v[0], v[0], "h-bin", "\x00"+v[0]))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("t-"+v[0], v[0]+"1", "t-"+v[0], v[0]+"2"))
		return []byte(v[0]), nil
	}})
	e := newEP(t, Config{Addr: b.addr})
	warm(t, e)
	md := metadata.MD{}
	var hdr, trl metadata.MD
	var store MDStore
	opts := []grpc.CallOption{grpc.Header(&hdr), grpc.Trailer(&trl), &OutgoingMD{MD: &md}, &store}
	ctx := metadata.NewOutgoingContext(ctxT(t, 10*time.Second), metadata.Pairs("x-ctx", "not sent"))
	calls := map[string]func(v string) error{
		"invoke": func(string) error {
			var resp rawcodec.Message
			defer resp.Free()
			return e.Invoke(ctx, "/"+svc+"/Meta", []byte{}, &resp, opts...)
		},
		"start": func(string) error {
			_, ch := startWait(t, e, ctx, "/"+svc+"/Meta", time.Now().Add(5*time.Second), []byte{}, opts...)
			return waitResult(t, ch).err
		},
	}
	for _, how := range []string{"invoke", "start"} {
		var hdrMap metadata.MD
		for i, v := range []string{"a", "b", "fail", "c", "c"} {
			md.Set("x-req", v)
			err := calls[how](v)
			if v == "fail" {
				if status.Code(err) != codes.NotFound {
					t.Fatalf("%s %d: %v, want NotFound", how, i, err)
				}
				// (its one header block is the trailer, content-type
				// included, as before and as grpc-go reports it)
				if len(hdr) != 0 || fmt.Sprint(trl) != fmt.Sprint(metadata.Pairs("content-type", "application/grpc")) {
					t.Errorf("%s: trailers-only failure: header %v, trailer %v", how, hdr, trl)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s %d: %v", how, i, err)
			}
			wantH := fmt.Sprint(metadata.Pairs("content-type", "application/grpc", "h-"+v, v, "h-bin", "\x00"+v))
			wantT := fmt.Sprint(metadata.Pairs("t-"+v, v+"1", "t-"+v, v+"2"))
			if fmt.Sprint(hdr) != wantH || fmt.Sprint(trl) != wantT {
				t.Errorf("%s %q: header %v trailer %v, want %v and %v", how, v, hdr, trl, wantH, wantT)
			}
			if hdrMap == nil {
				hdrMap = hdr
			} else if fmt.Sprintf("%p", hdr) != fmt.Sprintf("%p", hdrMap) {
				t.Errorf("%s %q: the header map was replaced, not refilled", how, v)
			}
		}
		store.Clear(hdr)
		store.Clear(trl)
	}
}

// TestMDStoreBounded: a map that once held many keys is not kept, and a
// store keeps a bounded number of value slices.
func TestMDStoreBounded(t *testing.T) {
	var s MDStore
	big := metadata.MD{}
	for i := range 1000 {
		big[fmt.Sprint("k", i)] = []string{"v"}
	}
	var dst metadata.MD
	s.fill(&dst, big)
	if len(dst) != 1000 {
		t.Fatalf("filled %d keys", len(dst))
	}
	old := fmt.Sprintf("%p", dst)
	s.fill(&dst, metadata.Pairs("a", "1"))
	if fmt.Sprint(dst) != fmt.Sprint(metadata.Pairs("a", "1")) || fmt.Sprintf("%p", dst) == old {
		t.Errorf("after a 1000-key map: %v (kept: %v)", dst, fmt.Sprintf("%p", dst) == old)
	}
	s.Clear(big)
	if len(s.free) > maxKeptKeys {
		t.Errorf("store keeps %d value slices, bound %d", len(s.free), maxKeptKeys)
	}
}
