package grpcdirect

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// hpackBlock encodes header fields given as name, value pairs.
func hpackBlock(kv ...string) []byte {
	var b bytes.Buffer
	e := hpack.NewEncoder(&b)
	for i := 0; i+1 < len(kv); i += 2 {
		_ = e.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return b.Bytes()
}

var okHeaders = []string{":status", "200", "content-type", "application/grpc"}

// grpcMsg is one length-prefixed gRPC message announcing n bytes with body
// as its payload (which may be shorter or longer than n).
func grpcMsg(n uint32, body []byte) []byte {
	b := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(b[1:], n)
	return append(b, body...)
}

// hostileH2 is a raw HTTP/2 server (x/net Framer on a real TCP listener)
// that answers each request HEADERS with act; it keeps reading frames
// (window updates, RST_STREAM, GOAWAY) unless act returns false.
func hostileH2(t *testing.T, act func(fr *http2.Framer, id uint32) bool) string {
	return rawH2Server(t, func(fr *http2.Framer) {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.HeadersFrame); ok && !act(fr, h.StreamID) {
				return
			}
		}
	})
}

// invokeGRPCGo makes the same call with grpc-go's own client: the
// reference for what status the same server bytes should yield.
func invokeGRPCGo(t *testing.T, addr string, d time.Duration) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var resp rawcodec.Message
	return cc.Invoke(ctx, "/"+svc+"/Echo", []byte("x"), &resp)
}

// bigBlock is a header block of about 17.6 MB decoded (over the 16 MB
// header list limit), built once.
var bigBlock = sync.OnceValue(func() []byte {
	kv := append([]string(nil), okHeaders...)
	pad := strings.Repeat("a", 8000)
	for i := range 2200 {
		kv = append(kv, fmt.Sprintf("x-pad-%d", i), pad)
	}
	return hpackBlock(kv...)
})

func TestAttackHostileGRPCBackend(t *testing.T) {
	type tc struct {
		name string
		want codes.Code // grpcdirect's status; grpc-go's is logged beside it
		act  func(fr *http2.Framer, id uint32) bool
	}
	trailers := func(fr *http2.Framer, id uint32, code string) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock("grpc-status", code), EndHeaders: true, EndStream: true})
	}
	headers := func(fr *http2.Framer, id uint32) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock(okHeaders...), EndHeaders: true})
	}
	cases := []tc{
		{"header_list_too_large", codes.Internal, func(fr *http2.Framer, id uint32) bool {
			blk := bigBlock()
			first := true
			for len(blk) > 0 {
				n := min(len(blk), 16384)
				var err error
				if first {
					err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk[:n], EndHeaders: n == len(blk)})
				} else {
					err = fr.WriteContinuation(id, n == len(blk), blk[:n])
				}
				if err != nil {
					return false
				}
				blk, first = blk[n:], false
			}
			trailers(fr, id, "0")
			return true
		}},
		{"endless_continuation", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock(okHeaders...)}) != nil {
				return false
			}
			for fr.WriteContinuation(id, false, nil) == nil {
			}
			return false
		}},
		{"message_over_max_recv", codes.ResourceExhausted, func(fr *http2.Framer, id uint32) bool {
			headers(fr, id)
			_ = fr.WriteData(id, false, grpcMsg(64<<20, []byte("x")))
			return true
		}},
		{"no_trailers_end_stream", codes.Internal, func(fr *http2.Framer, id uint32) bool {
			headers(fr, id)
			_ = fr.WriteData(id, true, grpcMsg(1, []byte("x")))
			return true
		}},
		{"no_trailers_eof", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			headers(fr, id)
			_ = fr.WriteData(id, false, grpcMsg(1, []byte("x")))
			return false
		}},
		{"rst_odd_code", codes.Unknown, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRSTStream(id, http2.ErrCode(0xdead))
			return true
		}},
		{"rst_flow_control", codes.ResourceExhausted, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRSTStream(id, http2.ErrCodeFlowControl)
			return true
		}},
		{"push_promise", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WritePushPromise(http2.PushPromiseParam{StreamID: id, PromiseID: 2,
				BlockFragment: hpackBlock(":method", "GET", ":path", "/x", ":scheme", "http", ":authority", "a"), EndHeaders: true})
			headers(fr, id)
			_ = fr.WriteData(id, false, grpcMsg(1, []byte("x")))
			trailers(fr, id, "0")
			return true
		}},
		{"goaway_below_inflight", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("calm"))
			return true
		}},
		// The frames grpcdirect reads from its buffer itself (HEADERS,
		// PING, WINDOW_UPDATE: fastFrame) when they are not well-formed
		// go to x/net's Framer, with its verdicts.
		{"headers_padded_priority", codes.OK, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock(okHeaders...), EndHeaders: true,
				PadLength: 7, Priority: http2.PriorityParam{StreamDep: 0, Weight: 3}})
			_ = fr.WriteData(id, false, grpcMsg(1, []byte("x")))
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock("grpc-status", "0"), EndHeaders: true, EndStream: true, PadLength: 1})
			return true
		}},
		{"headers_stream_zero", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 0, hpackBlock(okHeaders...))
			return true
		}},
		{"ping_mid_header_block", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock(okHeaders...)})
			_ = fr.WritePing(false, [8]byte{1})
			return true
		}},
		{"ping_short", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRawFrame(http2.FramePing, 0, 0, []byte{1, 2, 3, 4})
			return true
		}},
		{"ping_on_stream", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRawFrame(http2.FramePing, 0, id, make([]byte, 8))
			return true
		}},
		{"window_update_zero_conn", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 0})
			return true
		}},
		{"window_update_zero_stream", codes.Internal, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRawFrame(http2.FrameWindowUpdate, 0, id, []byte{0x80, 0, 0, 0}) // reserved bit only
			return true
		}},
		{"window_update_long", codes.Unavailable, func(fr *http2.Framer, id uint32) bool {
			_ = fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 1, 0})
			return true
		}},
		{"settings_and_ping_flood", codes.OK, func(fr *http2.Framer, id uint32) bool {
			for i := range 20000 {
				var err error
				if i%2 == 0 {
					err = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
				} else {
					err = fr.WritePing(false, [8]byte{byte(i)})
				}
				if err != nil {
					return false
				}
			}
			headers(fr, id)
			_ = fr.WriteData(id, false, grpcMsg(1, []byte("x")))
			trailers(fr, id, "0")
			return true
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := hostileH2(t, c.act)
			// Long enough for 17 MB of headers on a loaded machine; the
			// endless block holds grpc-go's call for all of it.
			d := 10 * time.Second
			if c.want == codes.Unavailable && c.name == "endless_continuation" {
				d = 2 * time.Second
			}
			ref := invokeGRPCGo(t, addr, d)
			e := newEP(t, Config{Addr: addr})
			ctx := ctxT(t, d)
			t0 := time.Now()
			var resp rawcodec.Message
			err := e.Invoke(ctx, "/"+svc+"/Echo", []byte("x"), &resp)
			el := time.Since(t0)
			t.Logf("grpcdirect: %v after %v; grpc-go: %v", status.Convert(err), el.Round(time.Millisecond), status.Convert(ref))
			if el > d+2*time.Second {
				t.Errorf("the call took %v", el)
			}
			if got := status.Code(err); got != c.want {
				t.Errorf("grpcdirect: %v, want %v (grpc-go: %v)", got, c.want, status.Code(ref))
			}
		})
	}
}

// TestAttackAnnouncedMessageCostsNothing: a server that answers many
// calls with a message prefix announcing 4 MiB (within the limit) and then
// sends nothing more makes MeshGate hold only what arrived, not what was
// announced. Before, each such stream took a 4 MiB buffer at once.
func TestAttackAnnouncedMessageCostsNothing(t *testing.T) {
	const calls = 50
	var mu sync.Mutex
	answered := 0
	acked := make(chan struct{})
	addr := rawH2Server(t, func(fr *http2.Framer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1000})
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hpackBlock(okHeaders...), EndHeaders: true})
				_ = fr.WriteData(f.StreamID, false, grpcMsg(4<<20-16, []byte("x")))
				mu.Lock()
				answered++
				if answered == calls {
					// The client has read every prefix once it acks this.
					_ = fr.WritePing(false, [8]byte{'a', 't', 't', 'a', 'c', 'k'})
				}
				mu.Unlock()
			case *http2.PingFrame:
				if f.IsAck() && f.Data == [8]byte{'a', 't', 't', 'a', 'c', 'k'} {
					close(acked)
				}
			}
		}
	})
	e := newEP(t, Config{Addr: addr})
	testkit.Within(t, 10*time.Second, "the connection ready", func() bool { return e.Ready(0) })
	before := testkit.HeapInuse()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	var wg sync.WaitGroup
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp rawcodec.Message
			_ = e.Invoke(ctx, "/"+svc+"/Echo", []byte("x"), &resp)
		}()
	}
	testkit.Receive(t, acked, 10*time.Second, "the client to read every announced message")
	grown := int64(testkit.HeapInuse()) - int64(before)
	cancel()
	wg.Wait()
	t.Logf("heap grew by %d KiB for %d streams announcing 4 MiB each", grown>>10, calls)
	if grown > 32<<20 {
		t.Fatalf("heap grew by %d MiB for %d streams that sent 6 bytes of message each", grown>>20, calls)
	}
}

// TestAttackInvalidSettings: a server whose SETTINGS carry values HTTP/2
// forbids (SETTINGS_MAX_FRAME_SIZE 0, ENABLE_PUSH 2) gets a connection
// error: the call fails UNAVAILABLE in bounded time. Before, a maximum
// frame size of 0 made the request's header write loop for ever on empty
// frames, holding the connection's write lock and a core, past the call's
// deadline.
func TestAttackInvalidSettings(t *testing.T) {
	for _, s := range []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 0}, {ID: http2.SettingEnablePush, Val: 2}} {
		t.Run(s.ID.String(), func(t *testing.T) {
			addr := rawH2Server(t, func(fr *http2.Framer) {
				_ = fr.WriteSettings(s)
				for {
					if _, err := fr.ReadFrame(); err != nil {
						return
					}
				}
			})
			e := newEP(t, Config{Addr: addr})
			done := make(chan error, 1)
			go func() {
				var resp rawcodec.Message
				done <- e.Invoke(ctxT(t, 2*time.Second), "/"+svc+"/Echo", []byte("x"), &resp)
			}()
			err := testkit.Receive(t, done, 5*time.Second, "the call to a server with invalid SETTINGS")
			if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
				t.Fatalf("call: %v, want UNAVAILABLE (or DEADLINE_EXCEEDED while reconnecting)", err)
			}
			t.Logf("grpcdirect: %v; grpc-go: %v", err, invokeGRPCGo(t, addr, 2*time.Second))
		})
	}
}
