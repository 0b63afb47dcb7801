package testkit

import (
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// H2Dial opens a TCP connection to addr for a raw HTTP/2 client made of
// x/net/http2's Framer (for what grpc-go's client never sends): the
// connection, closed at cleanup, with deadline from now on every read and
// write, and a Framer on it that decodes header blocks. Nothing is sent:
// the caller writes the client preface (or not) itself.
func H2Dial(tb testing.TB, addr string, deadline time.Duration) (net.Conn, *http2.Framer) {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(deadline))
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	return nc, fr
}

// H2Until reads frames from fr until one satisfies f and returns it; if
// the connection ends first it returns nil and the read error.
func H2Until(fr *http2.Framer, f func(http2.Frame) bool) (http2.Frame, error) {
	for {
		got, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f(got) {
			return got, nil
		}
	}
}

// H2GoAway reads frames from fr until a GOAWAY and returns its code.
func H2GoAway(fr *http2.Framer) (http2.ErrCode, error) {
	f, err := H2Until(fr, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	if err != nil {
		return 0, err
	}
	return f.(*http2.GoAwayFrame).ErrCode, nil
}
