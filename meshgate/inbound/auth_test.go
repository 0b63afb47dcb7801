package inbound

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
)

func TestAuth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	key := []byte("s3cret")
	e := newEnv(t, envOpts{auth: &AuthPolicy{Keys: map[uint32][]byte{7: key}, MaxSkew: 30 * time.Second}, now: func() time.Time { return now }})
	cl := e.dial()
	nonce := uint64(0)
	signed := func(f codec.Frame, keyID uint32, k []byte, ts time.Time, n uint64) []byte {
		b, err := e.codec.Sign(nil, &f, keyID, k, uint64(ts.UnixMilli()), n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	send := func(seq uint32, raw []byte) codec.Frame {
		ch := cl.expect(seq)
		cl.write(raw)
		r, _ := wait(t, ch)
		return r
	}
	nonce++
	r := send(1, signed(codec.Frame{Cmd: cmdMeta, Seq: 1}, 7, key, now, nonce))
	if r.Result != 0 || !strings.Contains(string(r.Body), "x-mgp-key-id=7") || strings.Contains(string(r.Body), "x-mgp-ext") {
		t.Fatalf("good auth: result %d body %q", r.Result, r.Body)
	}
	replay := signed(codec.Frame{Cmd: cmdEcho, Seq: 2}, 7, key, now, 99)
	if r := send(2, replay); r.Result != 0 {
		t.Fatalf("first use: %d", r.Result)
	}
	bad := map[string][]byte{
		"replayed nonce": replay,
		"bad MAC":        signed(codec.Frame{Cmd: cmdEcho, Seq: 2}, 7, []byte("wrong"), now, 100),
		"unknown key":    signed(codec.Frame{Cmd: cmdEcho, Seq: 2}, 8, key, now, 101),
		"stale":          signed(codec.Frame{Cmd: cmdEcho, Seq: 2}, 7, key, now.Add(-31*time.Second), 102),
		"future":         signed(codec.Frame{Cmd: cmdEcho, Seq: 2}, 7, key, now.Add(31*time.Second), 103),
	}
	missing, _ := e.codec.Append(nil, &codec.Frame{Cmd: cmdEcho, Seq: 2})
	bad["missing"] = missing
	tampered := signed(codec.Frame{Cmd: cmdEcho, Seq: 2, Body: []byte("abc")}, 7, key, now, 104)
	tampered[len(tampered)-2] ^= 1
	bad["tampered body"] = tampered
	for name, raw := range bad {
		if r := send(2, raw); r.Result != codec.ResultUnauthenticated {
			t.Errorf("%s: result %d, want 3", name, r.Result)
		}
	}
	if n := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("priv", "auth")); n != float64(len(bad)) {
		t.Errorf("auth rejections %v, want %d", n, len(bad))
	}
	// The connection is still usable.
	if r := send(3, signed(codec.Frame{Cmd: cmdEcho, Seq: 3, Body: []byte("ok")}, 7, key, now, 200)); r.Result != 0 || string(r.Body) != "ok" {
		t.Fatalf("after rejections: %+v", r)
	}
	// A truncated auth extension is malformed: the connection closes.
	trunc, _ := e.codec.Append(nil, &codec.Frame{Cmd: cmdEcho, Seq: 4, Ext: []codec.Ext{{Key: codec.ExtAuth, Value: make([]byte, 20)}}})
	cl.write(trunc)
	if err := cl.waitClosed(); !isEOF(err) {
		t.Fatalf("truncated auth: %v", err)
	}
	if n := testutil.ToFloat64(e.metrics.Malformed.WithLabelValues("priv", "auth_ext")); n != 1 {
		t.Errorf("auth_ext malformed counter %v", n)
	}
}
