package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testkit"
)

// h2Attacker is a raw HTTP/2 client (x/net/http2's Framer) for what
// grpc-go's client never sends.
type h2Attacker struct {
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

func attack(t *testing.T, addr string) *h2Attacker {
	t.Helper()
	nc, fr := testkit.H2Dial(t, addr, 15*time.Second)
	a := &h2Attacker{nc: nc, fr: fr}
	a.henc = hpack.NewEncoder(&a.hbuf)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	_ = a.fr.WriteSettings()
	return a
}

func (a *h2Attacker) headers(id uint32, end bool, method string, extra ...string) {
	a.hbuf.Reset()
	kv := append([]string{":method", "POST", ":scheme", "http", ":path", method, ":authority", "x",
		"content-type", "application/grpc", "te", "trailers"}, extra...)
	for i := 0; i+1 < len(kv); i += 2 {
		_ = a.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	_ = a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: a.hbuf.Bytes(), EndHeaders: true, EndStream: end})
}

// until reads frames until f holds (nil and the error if the connection ends).
func (a *h2Attacker) until(f func(http2.Frame) bool) (http2.Frame, error) {
	return testkit.H2Until(a.fr, f)
}

// wantCalm runs flood on a fresh attacker connection to addr, on a
// goroutine of its own, and checks the server ends the connection with
// GOAWAY ENHANCE_YOUR_CALM.
func wantCalm(t *testing.T, addr, what string, flood func(a *h2Attacker)) {
	t.Helper()
	a := attack(t, addr)
	go flood(a)
	if code, err := testkit.H2GoAway(a.fr); err != nil || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("%s: GOAWAY %v, %v", what, code, err)
	}
}

// TestHostileGRPCListener attacks the real binary's gRPC listener
// (grpc_transport: direct, the default) with raw HTTP/2 clients while a
// grpc-go client calls steadily through it (fast-path unary route) and
// the config is reloaded: an invalid request header resets only its
// stream (the call in flight on the same connection completes); a rapid
// reset flood and a PING flood get GOAWAY ENHANCE_YOUR_CALM, counted in
// meshgate_grpc_protocol_errors_total; connections holding
// MAX_CONCURRENT_STREAMS delegated streams open without reading are
// refused past the limit. Not one of the steady client's calls fails.
func TestHostileGRPCListener(t *testing.T) {
	is := interopServer(t)
	cfgFmt := `defaults: {drain_timeout: 1s}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: %[2]sUnaryCall, cmd: 22, upstream: loop}
      - {method: %[2]sFullDuplexCall, cmd: 23, upstream: loop, stream: bidi, timeout: 10s}
      - {method: %[2]sEmptyCall, cmd: 21, upstream: loop%[3]s}
  - name: mgp-mid
    kind: private
    address: 127.0.0.1:0
    routes:
      - {cmd: 21, method: %[2]sEmptyCall, upstream: interop}
      - {cmd: 22, method: %[2]sUnaryCall, upstream: interop}
      - {cmd: 23, method: %[2]sFullDuplexCall, upstream: interop, stream: bidi}
upstreams:
  - {name: loop, protocol: private, endpoints: [%[1]q], connections: 1}
  - {name: interop, protocol: grpc, endpoints: [%[4]q]}
`
	cfg := fmt.Sprintf(cfgFmt, harness.ListenerRef("mgp-mid"), interopSvc, "", is)
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))
	addr := mg.Addr("grpc-in")

	// The steady client.
	tc := testgrpc.NewTestServiceClient(testkit.Dial(t, addr))
	stop := make(chan struct{})
	var calls atomic.Int64
	wait := testkit.Load(2, stop, func() error {
		calls.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100})
		return err
	})
	stopped := false
	var failed int64
	var errs []error
	stopClient := func() {
		if !stopped {
			stopped = true
			close(stop)
			_, failed, errs = wait()
		}
	}
	t.Cleanup(stopClient)
	unary := interopSvc + "UnaryCall"
	duplex := interopSvc + "FullDuplexCall"

	// An invalid header field (connection-specific) on one stream.
	a := attack(t, addr)
	a.headers(1, false, unary)
	a.headers(3, true, unary, "connection", "keep-alive")
	if f, err := a.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }); err != nil {
		t.Fatalf("invalid header: %v (connection closed)", err)
	} else if r := f.(*http2.RSTStreamFrame); r.StreamID != 3 || r.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("invalid header: %v", r)
	}
	_ = a.fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}) // an empty SimpleRequest
	if f, err := a.until(func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == 1 && h.StreamEnded()
	}); err != nil {
		t.Fatalf("the call in flight beside the invalid one: %v", err)
	} else if st := f.(*http2.MetaHeadersFrame).Fields; !hasField(st, "grpc-status", "0") {
		t.Fatalf("the call in flight beside the invalid one: %v", st)
	}

	// Rapid reset.
	wantCalm(t, addr, "rapid reset", func(a *h2Attacker) {
		for id := uint32(1); id < 1200; id += 2 {
			a.headers(id, false, unary)
			if a.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	})

	// PING flood.
	wantCalm(t, addr, "ping flood", func(a *h2Attacker) {
		for i := range 200 {
			if a.fr.WritePing(false, [8]byte{byte(i)}) != nil {
				return
			}
		}
	})

	// Connections holding delegated streams open, never reading: the
	// stream past MAX_CONCURRENT_STREAMS (100) is refused.
	for range 3 {
		a := attack(t, addr)
		_ = a.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		for i := range 101 {
			a.headers(uint32(2*i+1), false, duplex)
		}
		if f, err := a.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }); err != nil {
			t.Fatalf("held streams: %v", err)
		} else if r := f.(*http2.RSTStreamFrame); r.StreamID != 201 || r.ErrCode != http2.ErrCodeRefusedStream {
			t.Fatalf("held streams: %v", r)
		}
	}

	// A reload (a route changed) while the steady client calls.
	mg.Reload(fmt.Sprintf(cfgFmt, harness.ListenerRef("mgp-mid"), interopSvc, ", timeout: 5s", is))
	before := calls.Load()
	testkit.Within(t, 5*time.Second, "calls after the reload", func() bool { return calls.Load() > before+20 })

	stopClient()
	if failed > 0 {
		t.Fatalf("%d of %d steady calls failed during the attacks; first: %v", failed, calls.Load(), errs)
	}
	for _, reason := range []string{"rapid_reset", "too_many_pings"} {
		n, err := mg.Metric("meshgate_grpc_protocol_errors_total", harness.Labels{"listener": "grpc-in", "reason": reason})
		if err != nil || n < 1 {
			t.Fatalf("meshgate_grpc_protocol_errors_total{reason=%q} = %v, %v", reason, n, err)
		}
	}
}

func hasField(fs []hpack.HeaderField, name, value string) bool {
	for _, f := range fs {
		if f.Name == name && f.Value == value {
			return true
		}
	}
	return false
}
