package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
)

// streamServer is a legacy server with two server-stream commands: cmd 21
// floods (count messages of size bytes), cmd 22 sends three small ones. It
// records the seqs it gets a CANCEL for.
type streamServer struct {
	ln          net.Listener
	count, size int
	cancels     chan uint32
}

func newStreamServer(t *testing.T, count, size int) *streamServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &streamServer{ln: ln, count: count, size: size, cancels: make(chan uint32, 16)}
	var wg sync.WaitGroup
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *streamServer) serve(nc net.Conn) {
	c := mgp.New(0)
	var wmu sync.Mutex
	write := func(f *codec.Frame) error {
		b, _ := c.Append(nil, f)
		wmu.Lock()
		defer wmu.Unlock()
		_, err := nc.Write(b)
		return err
	}
	rd := codec.NewReader(nc, c, 4096)
	var f codec.Frame
	for rd.ReadFrame(&f) == nil {
		switch {
		case f.Flags&codec.FlagHeartbeat != 0:
			if f.Flags&codec.FlagResponse == 0 {
				write(&codec.Frame{Seq: f.Seq, Flags: codec.FlagHeartbeat | codec.FlagResponse})
			}
		case f.Flags&codec.FlagCancel != 0:
			s.cancels <- f.Seq
		case f.Cmd == 21 && f.Flags&codec.FlagMore == 0:
			cmd, seq := f.Cmd, f.Seq
			go func() { // the flood, on its own goroutine: the connection keeps reading
				body := make([]byte, s.size)
				for range s.count {
					if write(&codec.Frame{Cmd: cmd, Seq: seq, Flags: codec.FlagResponse | codec.FlagMore, Body: body}) != nil {
						return
					}
				}
				write(&codec.Frame{Cmd: cmd, Seq: seq, Flags: codec.FlagResponse})
			}()
		case f.Cmd == 22 && f.Flags&codec.FlagMore == 0:
			for i := range 3 {
				write(&codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse | codec.FlagMore, Body: []byte(fmt.Sprint(i))})
			}
			write(&codec.Frame{Cmd: f.Cmd, Seq: f.Seq, Flags: codec.FlagResponse})
		}
	}
}

// TestSlowStreamConsumerDoesNotStallOthers: a gRPC client opens a stream
// that the legacy server floods (100,000 × 1 KiB) and stops reading after
// the first message. On the same upstream connection another client's
// stream completes at once; the flooded exchange is cut at its buffer
// bound (MeshGate sends CANCEL upstream instead of buffering 100 MB) and
// the slow client's call ends with RESOURCE_EXHAUSTED.
func TestSlowStreamConsumerDoesNotStallOthers(t *testing.T) {
	legacy := newStreamServer(t, 100000, 1024)
	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: /test.S/Flood, cmd: 21, upstream: legacy, stream: server, timeout: 30s}
      - {method: /test.S/Small, cmd: 22, upstream: legacy, stream: server, timeout: 30s}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 1}
`, legacy.ln.Addr().String())
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))
	dial := func() *grpc.ClientConn { return harness.DialGRPC(t, mg.Addr("grpc-in"), harness.RawCodec()) }
	desc := &grpc.StreamDesc{ServerStreams: true}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	slow, err := dial().NewStream(ctx, desc, "/test.S/Flood")
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.SendMsg([]byte("go")); err != nil {
		t.Fatal(err)
	}
	slow.CloseSend()
	var first []byte
	if err := slow.RecvMsg(&first); err != nil || len(first) != 1024 {
		t.Fatalf("first flood message: %d bytes, %v", len(first), err)
	}
	// The slow client reads nothing more. Its exchange is cut at the bound.
	select {
	case <-legacy.cancels:
	case <-time.After(20 * time.Second):
		t.Fatal("no CANCEL upstream: the flooded exchange was not bounded")
	}

	start := time.Now()
	fast, err := dial().NewStream(ctx, desc, "/test.S/Small")
	if err != nil {
		t.Fatal(err)
	}
	fast.SendMsg([]byte("hi"))
	fast.CloseSend()
	var got []string
	for {
		var b []byte
		err := fast.RecvMsg(&b)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("fast stream: %v", err)
		}
		got = append(got, string(b))
	}
	if len(got) != 3 || time.Since(start) > 5*time.Second {
		t.Fatalf("fast stream on the same upstream connection: %q in %v", got, time.Since(start))
	}

	// The slow client, reading again, drains what was buffered and learns
	// its stream was cut (result 6 → RESOURCE_EXHAUSTED).
	n := 1
	for {
		var b []byte
		err := slow.RecvMsg(&b)
		if err == nil {
			n++
			continue
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("slow stream ended with %v after %d messages", err, n)
		}
		break
	}
	if n >= 100000 {
		t.Fatalf("slow stream got all %d messages: nothing was bounded", n)
	}
	t.Logf("slow stream cut after %d of 100000 messages", n)
}
