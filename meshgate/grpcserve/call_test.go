package grpcserve

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestOnCancel: a Call's OnCancel hook runs when the client resets the
// stream and when the connection ends, not when a stopped hook's call is
// finished; OnCancel on a call cancelled already returns false.
func TestOnCancel(t *testing.T) {
	fired := make(chan uint32, 4)
	armed := make(chan *Call, 4)
	ts := start(t, handlerFunc(func(c *Call) {
		if !c.OnCancel(func() { fired <- c.id }) {
			t.Errorf("stream %d: OnCancel on a live call returned false", c.id)
		}
		armed <- c
	}), nil)
	rc := rawDial(t, ts.addr)
	open := func(id uint32) *Call {
		t.Helper()
		rc.headers(id, false, grpcReq...)
		_ = rc.fr.WriteData(id, true, msg([]byte("a")))
		select {
		case c := <-armed:
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("stream %d never reached the handler", id)
			return nil
		}
	}
	wantFired := func(id uint32, why string) {
		t.Helper()
		select {
		case got := <-fired:
			if got != id {
				t.Fatalf("%s: hook of stream %d ran, want %d", why, got, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the hook of stream %d did not run", why, id)
		}
	}

	c1 := open(1)
	_ = rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	wantFired(1, "RST_STREAM")
	if c1.OnCancel(func() { t.Error("a hook set after the cancellation ran") }) {
		t.Error("OnCancel on a reset call returned true")
	}
	c1.Finish(nil)

	c3 := open(3)
	if !c3.StopOnCancel() {
		t.Fatal("StopOnCancel of an armed hook returned false")
	}
	c3.Finish(nil)
	if _, err := rc.until(func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == 3 && h.StreamEnded()
	}); err != nil {
		t.Fatal(err)
	}

	c5 := open(5)
	_ = rc.nc.Close()
	wantFired(5, "connection closed")
	c5.Finish(nil)
	if len(fired) != 0 {
		t.Fatalf("hook of stream %d ran as well", <-fired)
	}
}

// TestMetadataRepeatedKeys: a key sent several times, between other keys,
// keeps every value in order and leaves the other keys' values alone
// (the values share one backing array: onHeaders).
func TestMetadataRepeatedKeys(t *testing.T) {
	got := make(chan map[string][]string, 1)
	ts := start(t, handlerFunc(func(c *Call) {
		m := map[string][]string{}
		for k, v := range c.Metadata() {
			m[k] = append([]string(nil), v...)
		}
		got <- m
		c.Finish(nil)
	}), nil)
	rc := rawDial(t, ts.addr)
	rc.headers(1, false, append(append([]string(nil), grpcReq...), "k", "1", "j", "x", "k", "2", "i", "y", "k", "3")...)
	_ = rc.fr.WriteData(1, true, msg([]byte("a")))
	m := <-got
	want := map[string]string{"k": "1,2,3", "j": "x", "i": "y", ":authority": "x", "content-type": "application/grpc"}
	for k, v := range want {
		if s := strings.Join(m[k], ","); s != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, s, v, m)
		}
	}
}
