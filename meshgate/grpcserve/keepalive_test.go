package grpcserve

import (
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestKeepalivePing: a silent client is PINGed after KeepaliveTime; one
// that answers keeps its connection through several rounds and is still
// served; one that does not answer is closed after KeepaliveTimeout.
func TestKeepalivePing(t *testing.T) {
	ts := start(t, handlerFunc(echo), func(c *Config) {
		c.KeepaliveTime, c.KeepaliveTimeout = 50*time.Millisecond, 100*time.Millisecond
		c.IdleGrace = 20 * time.Millisecond // the pings reach a parked connection too
	})
	isPing := func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() }

	// Answering: three rounds, then a call on the same connection.
	rc := rawDial(t, ts.addr)
	for i := range 3 {
		f, err := rc.until(isPing)
		if err != nil {
			t.Fatalf("round %d: no keepalive PING: %v", i, err)
		}
		if err := rc.fr.WritePing(true, f.(*http2.PingFrame).Data); err != nil {
			t.Fatal(err)
		}
	}
	rc.wantOK(1, "call after keepalive rounds")

	// Silent: PINGed, then closed.
	quiet := rawDial(t, ts.addr)
	if _, err := quiet.until(isPing); err != nil {
		t.Fatalf("no keepalive PING: %v", err)
	}
	start := time.Now()
	_, err := quiet.until(func(http2.Frame) bool { return false })
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("unanswered keepalive: connection ended after %v with %v, want closed within the timeout", time.Since(start), err)
	}
}
