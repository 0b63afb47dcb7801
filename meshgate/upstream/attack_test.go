package upstream_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/pooltest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// hostileBackend serves every connection with fn (each request frame as
// it is read; fn returns false to stop reading and hold the connection
// open until cleanup). read=false: the connection is never read at all.
func hostileBackend(t *testing.T, read bool, fn func(nc net.Conn, f *codec.Frame, n int) bool) string {
	ln := testkit.Listen(t, "127.0.0.1:0")
	stop := make(chan struct{})
	testkit.ServeConns(t, ln, func(nc net.Conn) {
		if read {
			r := codec.NewReader(nc, mgp.New(0), 1024)
			var f codec.Frame
			for n := 0; r.ReadFrame(&f) == nil; n++ {
				if f.Flags.Has(codec.FlagHeartbeat) {
					continue
				}
				if !fn(nc, &f, n) {
					break
				}
			}
		}
		if !read {
			<-stop
			return
		}
		select {
		case <-stop:
		case <-waitClosed(nc):
		}
	})
	t.Cleanup(func() { close(stop) })
	return ln.Addr().String()
}

// waitClosed is closed when nc's peer closes (or nc is closed); it reads
// and discards.
func waitClosed(nc net.Conn) <-chan struct{} {
	ch := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, nc); close(ch) }()
	return ch
}

func reply(f *codec.Frame) []byte {
	b, _ := mgp.New(0).Append(nil, &codec.Frame{Cmd: f.Cmd, Seq: f.Seq, UIN: f.UIN, Flags: codec.FlagResponse, Body: append([]byte(nil), f.Body...)})
	return b
}

// TestAttackHostilePrivateBackends: one endpoint of a two-endpoint
// private upstream misbehaves in one way per case. Every call returns
// within its deadline (plus a bounded write timeout) with either the
// right answer (from the good endpoint) or a clear status
// (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED); the good endpoint
// keeps serving; where the connection must go, it is closed, counted by
// reason and replaced; goroutines end (goleak in TestMain).
func TestAttackHostilePrivateBackends(t *testing.T) {
	type tc struct {
		name   string
		read   bool
		fn     func(nc net.Conn, f *codec.Frame, n int) bool
		body   int    // request body size
		reason string // connections_lost_total reason that must grow ("" none)
	}
	cases := []tc{
		{name: "garbage", read: true, reason: upstream.LostMalformed, fn: func(nc net.Conn, _ *codec.Frame, _ int) bool {
			_, _ = nc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			return false
		}},
		{name: "bad_magic", read: true, reason: upstream.LostMalformed, fn: func(nc net.Conn, f *codec.Frame, _ int) bool {
			b := reply(f)
			b[0] = 0x7f
			_, _ = nc.Write(b)
			return false
		}},
		{name: "oversized_header_then_stall", read: true, reason: upstream.LostMalformed, fn: func(nc net.Conn, f *codec.Frame, _ int) bool {
			b := reply(f)
			binary.BigEndian.PutUint32(b[4:], 64<<20) // body_len 64 MiB
			_, _ = nc.Write(b[:32])
			return false
		}},
		{name: "close_mid_frame", read: true, reason: upstream.LostClosed, fn: func(nc net.Conn, f *codec.Frame, _ int) bool {
			b := reply(f)
			_, _ = nc.Write(b[:len(b)/2])
			_ = nc.Close()
			return false
		}},
		{name: "dribble", read: true, fn: func(nc net.Conn, f *codec.Frame, _ int) bool {
			for _, c := range reply(f)[:8] { // a few bytes, 100 ms apart
				if _, err := nc.Write([]byte{c}); err != nil {
					return false
				}
				time.Sleep(100 * time.Millisecond)
			}
			return false
		}},
		{name: "unknown_seq", read: true, fn: func(nc net.Conn, f *codec.Frame, _ int) bool {
			f.Seq += 1000
			_, _ = nc.Write(reply(f))
			return true
		}},
		{name: "every_other", read: true, fn: func(nc net.Conn, f *codec.Frame, n int) bool {
			if n%2 == 0 {
				_, _ = nc.Write(reply(f))
			}
			return true
		}},
		{name: "never_reads", read: false, body: 512 << 10, reason: upstream.LostWriteTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			good := startLegacy(t, "127.0.0.1:0", legacy.ServerOptions{})
			bad := hostileBackend(t, c.read, c.fn)
			// write_timeout from the config (never_reads depends on it)
			u := config.Upstream{Name: "legacy", Protocol: config.ProtoPrivate, LB: config.LBRoundRobin,
				Endpoints: []string{good.Addr().String(), bad}, Connections: 1, WriteTimeout: 300 * time.Millisecond}
			p := pooltest.Private(t, u.WithDefaults(), reg, 2, pooltest.FastBackoff())
			ctx := testkit.Context(t, 20*time.Second)
			// 40 calls at once: round robin sends about half of them to
			// the bad endpoint before its first failure is known.
			type res struct {
				i   int
				el  time.Duration
				err error
				ok  bool
			}
			results := make(chan res, 40)
			for i := range 40 {
				go func() {
					body := make([]byte, max(c.body, 8))
					copy(body, fmt.Sprint(i))
					cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					defer cancel()
					t0 := time.Now()
					r, err := p.Do(cctx, &codec.Frame{Cmd: legacy.CmdEcho, UIN: uint64(i), Body: body})
					if err == nil && string(r.Body) != string(body) {
						err = fmt.Errorf("wrong answer %q", r.Body[:8])
					} else if err != nil {
						err = upstream.Status(cctx, err)
					}
					results <- res{i: i, el: time.Since(t0), err: err, ok: err == nil}
				}()
			}
			var ok, failed int
			for range 40 {
				r := testkit.Receive(t, results, 10*time.Second, "a call to a hostile upstream")
				if r.el > 3*time.Second {
					t.Fatalf("call %d took %v", r.i, r.el)
				}
				if r.ok {
					ok++
					continue
				}
				failed++
				switch code := status.Code(r.err); code {
				case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
				default:
					t.Fatalf("call %d: %v (%v)", r.i, code, r.err)
				}
			}
			if ok == 0 {
				t.Fatal("the good endpoint served nothing")
			}
			t.Logf("%d answered, %d failed", ok, failed)
			t1 := time.Now()
			if c.reason != "" {
				testkit.Within(t, 5*time.Second, "the bad connection counted as lost ("+c.reason+")", func() bool {
					return lost(t, reg, c.reason) > 0
				})
			}
			// The good endpoint keeps serving: 10 calls in a row answered.
			testkit.Succeeds(t, ctx, 10*time.Millisecond, func() error {
				for range 10 {
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					_, err := p.Do(cctx, &codec.Frame{Cmd: legacy.CmdEcho, Body: []byte("x")})
					cancel()
					if err != nil {
						return err
					}
				}
				return nil
			}, "calls after the attack")
			t.Logf("counted and served again after %v", time.Since(t1))
		})
	}
}

func lost(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshgate_private_upstream_connections_lost_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
