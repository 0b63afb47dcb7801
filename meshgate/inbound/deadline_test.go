package inbound

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// countConn is a net.Conn over a byte stream that counts deadline calls
// (a fake for the unit test of deadlineReader alone).
type countConn struct {
	net.Conn
	r             io.Reader
	reads, writes int
	lastRead      time.Time
}

func (c *countConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *countConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *countConn) SetWriteDeadline(t time.Time) error { c.writes++; return nil }
func (c *countConn) SetReadDeadline(t time.Time) error {
	c.reads++
	c.lastRead = t
	return nil
}

// TestDeadlinesArmedOncePerSlack checks that reading and answering 1000
// frames one after another re-arms the socket's read and write deadlines
// once, not once per read and write (each arm re-arms a runtime timer), and
// that the armed idle deadline never lies before idle from now.
func TestDeadlinesArmedOncePerSlack(t *testing.T) {
	c := mgp.New(0)
	var wire []byte
	const n = 1000
	for i := 0; i < n; i++ {
		wire, _ = c.Append(wire, &codec.Frame{Cmd: 1, Seq: uint32(i + 1), Body: []byte("0123456789")})
	}
	s := New(Options{Codec: c}, nil)
	// One frame per socket read, as when requests arrive one at a time.
	cc := &countConn{r: &chunked{b: wire, n: len(wire) / n}}
	cn := s.newConn(cc)
	cn.idle, cn.rto = time.Minute, 10*time.Second
	var f codec.Frame
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := cn.rd.ReadFrame(&f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if cc.lastRead.Before(start.Add(cn.idle)) {
			t.Fatalf("frame %d: read deadline %v is less than idle from the read", i, cc.lastRead.Sub(start))
		}
		cn.reply(&codec.Frame{Cmd: 1, Seq: f.Seq, Flags: codec.FlagResponse})
	}
	if cc.reads > 2 || cc.writes > 2 {
		t.Fatalf("%d frames: read deadline armed %d times, write deadline %d times; want at most 2 each", n, cc.reads, cc.writes)
	}
}

// chunked returns at most n bytes per Read.
type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	m := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[m:]
	return m, nil
}
