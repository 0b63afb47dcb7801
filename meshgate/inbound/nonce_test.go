package inbound

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestNonceCacheExpiresByTimestamp: a nonce is kept exactly until its
// expiry, whatever else arrives, and then dropped.
func TestNonceCacheExpiresByTimestamp(t *testing.T) {
	c := newNonceCache(0)
	const now = 1_000_000
	if r := c.add(1, 5, now+10_000, now, nonceLimits{10, 10}); r != nonceOK {
		t.Fatal(r)
	}
	for i := uint64(0); i < 8; i++ { // other keys, same nonce values
		if r := c.add(2, i, now+1_000, now, nonceLimits{10, 10}); r != nonceOK {
			t.Fatal(r)
		}
	}
	if r := c.add(3, 1, now+20_000, now, nonceLimits{10, 10}); r != nonceOK {
		t.Fatal(r)
	}
	if r := c.add(3, 2, now+20_000, now, nonceLimits{10, 10}); r != nonceFull {
		t.Fatalf("11th nonce: %v, want full", r)
	}
	if r := c.add(1, 5, now+10_000, now+999, nonceLimits{10, 10}); r != nonceReplay {
		t.Fatalf("replay before expiry: %v", r)
	}
	// At now+1500 the eight short-lived nonces are gone: room again.
	if r := c.add(3, 2, now+20_000, now+1_500, nonceLimits{10, 10}); r != nonceOK {
		t.Fatalf("after expiry: %v", r)
	}
	if r := c.add(1, 5, now+10_000, now+9_999, nonceLimits{10, 10}); r != nonceReplay {
		t.Fatalf("replay at the last instant: %v", r)
	}
	c.sweepAll(now + 9_999) // shards not used since drop their expired buckets now
	if c.len() != 3 {
		t.Fatalf("len %d, want 3", c.len())
	}
	c.sweepAll(now + 30_000)
	if c.len() != 0 {
		t.Fatalf("len %d after every expiry", c.len())
	}
}

// TestNonceCacheConcurrent: one nonce added from many goroutines is
// accepted once.
func TestNonceCacheConcurrent(t *testing.T) {
	c := newNonceCache(0)
	const g, n = 8, 2000
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := 0
			for i := range uint64(n) {
				if c.add(i%3, i, 10_000, 0, nonceLimits{1 << 20, 1 << 20}) == nonceOK {
					mine++
				}
			}
			mu.Lock()
			ok += mine
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ok != n || c.len() != n {
		t.Fatalf("accepted %d, len %d, want %d", ok, c.len(), n)
	}
}

// TestNonceWindowRamp: raising max_skew keeps the old acceptance window
// until every nonce kept under it has expired.
func TestNonceWindowRamp(t *testing.T) {
	c := newNonceCache(0)
	if a, r := c.window(10_000, 0); a != 10_000 || r != 10_000 {
		t.Fatal(a, r)
	}
	if a, r := c.window(60_000, 1_000); a != 10_000 || r != 60_000 {
		t.Fatalf("just raised: accept %d retain %d", a, r)
	}
	if a, _ := c.window(60_000, 1_000+70_000); a != 60_000 {
		t.Fatalf("after the ramp: accept %d", a)
	}
	if a, r := c.window(5_000, 80_000); a != 5_000 || r != 60_000 {
		t.Fatalf("lowered: accept %d retain %d", a, r)
	}
}

// TestClockNeverGoesBack: after the wall clock steps back, staleness is
// judged against the latest time seen, so nonces dropped before the step
// cannot come back.
func TestClockNeverGoesBack(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t, envOpts{auth: authPolicy(5*time.Second, 0), now: clk.now})
	ts := clk.at(0)
	raw := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1}, 7, ts, 1)
	if got := testkit.Flood(t, e.addr, raw, 1); got[codec.ResultOK] != 1 {
		t.Fatal(got)
	}
	clk.add(6 * time.Second) // the nonce expires and is swept
	if got := testkit.Flood(t, e.addr, signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1}, 8, clk.at(0), 1), 1); got[codec.ResultOK] != 1 {
		t.Fatal(got)
	}
	e.srv.auth.nonces.sweepAll(clk.ms.Load())
	clk.add(-4 * time.Second) // NTP step back: raw's timestamp looks fresh again
	if got := testkit.Flood(t, e.addr, raw, 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("replay after the clock stepped back: %v", got)
	}
}

func BenchmarkNonceAdd(b *testing.B) {
	c := newNonceCache(0)
	var seq uint64
	var mu sync.Mutex
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		base := seq
		seq += 1 << 40
		mu.Unlock()
		i := base
		for pb.Next() {
			i++
			// Timestamps advance 1 ms per 10 frames: a steady stream whose
			// nonces expire 30 s after their timestamp.
			now := int64(i-base) / 10
			if c.add(1, i, now+30_000, now, nonceLimits{1 << 30, 1 << 30}) != nonceOK {
				b.Error("refused")
				return
			}
		}
	})
}

// BenchmarkServerVerify is the listener's whole auth path for one fresh
// frame: locate and parse the extension, skew, MAC, replay cache. The
// frame is re-signed (zero-alloc) each time so every nonce is new.
func BenchmarkServerVerify(b *testing.B) {
	var ms atomic.Int64
	ms.Store(1_800_000_000_000)
	s := New(Options{Name: "bench", Codec: mgp.New(0), Now: func() time.Time { return time.UnixMilli(ms.Load()) }}, NewTable("bench", nil, Limits{}, nil, nil))
	p := authPolicy(30*time.Second, 1<<30)
	c := mgp.New(0)
	key := mgp.NewKey(testKeys[7])
	f := codec.Frame{Cmd: 1, Body: make([]byte, 256), Ext: make([]codec.Ext, 0, 1)}
	buf := make([]byte, 0, 512)
	var g codec.Frame
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		i++
		now := ms.Add(1) // 1000 frames per second of fake time: steady state after 60k
		raw, err := c.SignKey(buf[:0], &f, 7, key, uint64(now), i)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Decode(raw, &g); err != nil {
			b.Fatal(err)
		}
		if _, reason := s.verify(p, raw, &g); reason != "" {
			b.Fatal(reason)
		}
	}
}
