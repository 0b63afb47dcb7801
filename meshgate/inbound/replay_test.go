package inbound

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/authz"
	"github.com/meshgate/meshgate/meshgate/config"
)

const cmdUnrouted = 999

// fakeClock is a settable clock for the listener.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(1_800_000_000_000)
	return c
}
func (c *fakeClock) now() time.Time            { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) add(d time.Duration)       { c.ms.Add(d.Milliseconds()) }
func (c *fakeClock) at(d time.Duration) uint64 { return uint64(c.ms.Load() + d.Milliseconds()) }

var testKeys = map[uint32][]byte{7: []byte("victim-secret"), 8: []byte("other-secret-8"), 9: []byte("other-secret-9")}

func authPolicy(skew time.Duration, maxNonces int) *AuthPolicy {
	return &AuthPolicy{Keys: testKeys, MaxSkew: skew, MaxNonces: maxNonces}
}

// signFrame encodes one signed request.
func signFrame(t testing.TB, c *mgp.Codec, f codec.Frame, keyID uint32, unixMs, nonce uint64) []byte {
	t.Helper()
	b, err := c.Sign(nil, &f, keyID, testKeys[keyID], unixMs, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signedBatch signs n requests for cmd, key ids alternating over ids,
// nonces from nonce0, seqs from 1.
func signedBatch(t testing.TB, k *mgp.Codec, cmd uint32, ids []uint32, unixMs func(i int) uint64, nonce0 uint64, n int) []byte {
	t.Helper()
	return signedBatchFlags(t, k, cmd, 0, ids, unixMs, nonce0, n)
}

// signedBatchFlags is signedBatch with frame flags.
func signedBatchFlags(t testing.TB, k *mgp.Codec, cmd uint32, flags codec.Flags, ids []uint32, unixMs func(i int) uint64, nonce0 uint64, n int) []byte {
	t.Helper()
	keys := map[uint32]*mgp.Key{}
	for _, id := range ids {
		keys[id] = mgp.NewKey(testKeys[id])
	}
	out := make([]byte, 0, n*96)
	f := codec.Frame{Cmd: cmd, Flags: flags, Ext: make([]codec.Ext, 0, 1)}
	for i := 0; i < n; i++ {
		id := ids[i%len(ids)]
		f.Seq = uint32(i + 1)
		var err error
		if out, err = k.SignKey(out, &f, id, keys[id], unixMs(i), nonce0+uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func authFailures(e *env, reason string) int {
	return int(testutil.ToFloat64(authz.Failures(e.metrics.Registry).WithLabelValues("priv", reason)))
}

// TestReplayAfterFlood: 200,000 frames from other key holders (to a cmd
// with no route) cannot push a captured frame out of the replay cache. The
// old FIFO cache of 65,536 shared entries forgot it and accepted the
// replay.
func TestReplayAfterFlood(t *testing.T) {
	const n = 200_000
	e := newEnv(t, envOpts{auth: authPolicy(30*time.Second, 0)})
	now := func(int) uint64 { return uint64(time.Now().UnixMilli()) }
	captured := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1, Body: []byte("pay 100")}, 7, now(0), 1)
	if got := testkit.Flood(t, e.addr, captured, 1); got[codec.ResultOK] != 1 {
		t.Fatalf("first use: %v", got)
	}
	// Two other key holders, on two connections at once, with the same
	// nonce values as the victim (nonces are per key id). ONEWAY frames
	// keep the run short: nothing to answer, and a heartbeat after them
	// (answered in order by the same read loop) marks their end.
	var wg sync.WaitGroup
	for c := range 2 {
		wire := signedBatchFlags(t, e.codec, cmdUnrouted, codec.FlagOneway, []uint32{8, 9}, now, uint64(c*n/2), n/2)
		hb, _ := e.codec.Append(nil, &codec.Frame{Seq: 1, Flags: codec.FlagHeartbeat})
		wg.Add(1)
		go func() { defer wg.Done(); testkit.Flood(t, e.addr, append(wire, hb...), 1) }()
	}
	wg.Wait()
	if r := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("priv", "unknown_cmd")); r != n {
		t.Fatalf("%v frames got past auth to the router, want %d", r, n)
	}
	for _, reason := range authz.Reasons {
		if r := authFailures(e, reason); r != 0 {
			t.Fatalf("%d auth failures %q during the flood", r, reason)
		}
	}
	if l := e.srv.auth.nonces.len(); l != n+1 {
		t.Fatalf("replay cache holds %d nonces, want %d", l, n+1)
	}
	if got := testkit.Flood(t, e.addr, captured, 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("replay after %d frames from other keys: %v, want result 3", n, got)
	}
	if r := authFailures(e, authz.ReasonReplay); r != 1 {
		t.Fatalf("replay failures %d", r)
	}
}

// TestNonceBoundFailsClosed: at auth.max_nonces new frames get result 3
// (nonce_cache_full) instead of evicting anything, no replay is accepted,
// and the listener recovers once the remembered nonces time out.
func TestNonceBoundFailsClosed(t *testing.T) {
	const max, skew = 1000, 10 * time.Second
	clk := newFakeClock()
	p := authPolicy(skew, max)
	p.MaxNoncesPerKey = max
	e := newEnv(t, envOpts{auth: p, now: clk.now})
	ts := func(int) uint64 { return clk.at(0) }
	first := signedBatch(t, e.codec, cmdUnrouted, []uint32{7, 8}, ts, 1, max)
	if got := testkit.Flood(t, e.addr, first, max); got[codec.ResultUnknownCommand] != max {
		t.Fatalf("filling: %v", got)
	}
	more := signedBatch(t, e.codec, cmdUnrouted, []uint32{7, 9}, ts, 1_000_000, 50)
	if got := testkit.Flood(t, e.addr, more, 50); got[codec.ResultUnauthenticated] != 50 {
		t.Fatalf("past the bound: %v, want 50 × result 3", got)
	}
	if r := authFailures(e, authz.ReasonNonceCacheFull); r != 50 {
		t.Fatalf("nonce_cache_full %d", r)
	}
	// Every captured frame stays refused while full.
	if got := testkit.Flood(t, e.addr, first, max); got[codec.ResultUnauthenticated] != max {
		t.Fatalf("replays at the bound: %v", got)
	}
	if r := authFailures(e, authz.ReasonReplay); r != max {
		t.Fatalf("replay failures %d, want %d", r, max)
	}
	// Half a window later the nonces are still remembered: still full.
	clk.add(skew / 2)
	if got := testkit.Flood(t, e.addr, signedBatch(t, e.codec, cmdUnrouted, []uint32{8}, ts, 2_000_000, 1), 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("still full: %v", got)
	}
	// Once their timestamps are out of the window they are dropped, and
	// the captured frames fail on their timestamp instead.
	clk.add(skew/2 + time.Second)
	if got := testkit.Flood(t, e.addr, signedBatch(t, e.codec, cmdUnrouted, []uint32{8}, ts, 3_000_000, 100), 100); got[codec.ResultUnknownCommand] != 100 {
		t.Fatalf("after expiry: %v", got)
	}
	if got := testkit.Flood(t, e.addr, first, max); got[codec.ResultUnauthenticated] != max {
		t.Fatalf("stale replays: %v", got)
	}
	// Shards drop expired buckets when next used; sweep the rest.
	e.srv.auth.nonces.sweepAll(clk.ms.Load())
	if l := e.srv.auth.nonces.len(); l != 100 {
		t.Fatalf("cache holds %d nonces, want 100", l)
	}
}

// TestNonceKeyQuota: one key holder flooding the listener uses up only its
// share of the bound (by default half, with several keys); the other keys
// keep working and its own replays stay refused.
func TestNonceKeyQuota(t *testing.T) {
	const max = 1000
	e := newEnv(t, envOpts{auth: authPolicy(30*time.Second, max)})
	now := func(int) uint64 { return uint64(time.Now().UnixMilli()) }
	flooder := signedBatch(t, e.codec, cmdUnrouted, []uint32{8}, now, 1, max)
	got := testkit.Flood(t, e.addr, flooder, max)
	if got[codec.ResultUnknownCommand] != max/2 || got[codec.ResultUnauthenticated] != max/2 {
		t.Fatalf("flooding key: %v, want %d through and %d refused", got, max/2, max/2)
	}
	if r := authFailures(e, authz.ReasonNonceKeyQuota); r != max/2 {
		t.Fatalf("nonce_key_quota %d", r)
	}
	others := signedBatch(t, e.codec, cmdUnrouted, []uint32{7, 9}, now, 1, max/2)
	if got := testkit.Flood(t, e.addr, others, max/2); got[codec.ResultUnknownCommand] != max/2 {
		t.Fatalf("other keys: %v", got)
	}
	if got := testkit.Flood(t, e.addr, flooder[:len(flooder)/4], max/4); got[codec.ResultUnauthenticated] != max/4 {
		t.Fatalf("replays: %v", got)
	}
}

// TestSkewBoundaries: ±max_skew is accepted, 1 ms beyond is refused, and a
// refused timestamp never reaches the replay cache.
func TestSkewBoundaries(t *testing.T) {
	const skew = 5 * time.Second
	clk := newFakeClock()
	e := newEnv(t, envOpts{auth: authPolicy(skew, 0), now: clk.now})
	clk.add(time.Minute) // past the start-up floor (TestRestartFloor)
	ms := time.Millisecond
	for i, tc := range []struct {
		off  time.Duration
		want uint16
	}{
		{-skew, codec.ResultOK}, {skew, codec.ResultOK}, {0, codec.ResultOK},
		{-skew - ms, codec.ResultUnauthenticated}, {skew + ms, codec.ResultUnauthenticated},
		{-time.Hour, codec.ResultUnauthenticated}, {time.Hour, codec.ResultUnauthenticated},
	} {
		before := e.srv.auth.nonces.len()
		raw := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1}, 7, clk.at(tc.off), uint64(100+i))
		if got := testkit.Flood(t, e.addr, raw, 1); got[tc.want] != 1 {
			t.Errorf("timestamp now%+v: %v, want result %d", tc.off, got, tc.want)
		}
		if grew := e.srv.auth.nonces.len() - before; (tc.want == codec.ResultOK) != (grew == 1) {
			t.Errorf("timestamp now%+v: cache grew by %d", tc.off, grew)
		}
	}
	if r := authFailures(e, authz.ReasonSkew); r != 4 {
		t.Errorf("skew failures %d, want 4", r)
	}
	// A frame accepted at the edge of the future window is remembered
	// until its timestamp leaves the past window: 2×skew later.
	edge := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1}, 8, clk.at(skew), 1)
	if got := testkit.Flood(t, e.addr, edge, 1); got[codec.ResultOK] != 1 {
		t.Fatal(got)
	}
	clk.add(2 * skew)
	if got := testkit.Flood(t, e.addr, edge, 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("replay at the last valid instant: %v", got)
	}
	if r := authFailures(e, authz.ReasonReplay); r != 1 {
		t.Fatalf("replay failures %d", r)
	}
}

// TestRestartFloor: a fresh replay cache (a restarted process) refuses
// frames stamped before it was created, even inside max_skew: the previous
// process may have accepted them.
func TestRestartFloor(t *testing.T) {
	clk := newFakeClock()
	before := signFrame(t, mgp.New(0), codec.Frame{Cmd: cmdEcho, Seq: 1}, 7, clk.at(-time.Millisecond), 1)
	e := newEnv(t, envOpts{auth: authPolicy(30*time.Second, 0), now: clk.now})
	clk.add(time.Second)
	if got := testkit.Flood(t, e.addr, before, 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("frame signed before the start: %v", got)
	}
	after := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1}, 7, clk.at(-time.Millisecond), 2)
	if got := testkit.Flood(t, e.addr, after, 1); got[codec.ResultOK] != 1 {
		t.Fatalf("frame signed after the start: %v", got)
	}
}

// TestReplayAcrossReload: the replay cache belongs to the listener, not to
// the table: a reload forgets nothing, and raising max_skew does not open
// a window in which nonces already forgotten would pass.
func TestReplayAcrossReload(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t, envOpts{auth: authPolicy(10*time.Second, 0), now: clk.now})
	raw := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1}, 7, clk.at(0), 42)
	if got := testkit.Flood(t, e.addr, raw, 1); got[codec.ResultOK] != 1 {
		t.Fatal(got)
	}
	reload := func(skew time.Duration) {
		old := e.srv.Table()
		routes := make([]Route, 0)
		for _, r := range old.Routes() {
			routes = append(routes, *r)
		}
		e.srv.SetTable(NewTable("priv", routes, limitsOf(old), authPolicy(skew, 0), nil))
	}
	reload(10 * time.Second)
	if got := testkit.Flood(t, e.addr, raw, 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("replay after reload: %v", got)
	}
	clk.add(11 * time.Second) // the nonce has timed out under the 10s window
	reload(60 * time.Second)
	if got := testkit.Flood(t, e.addr, raw, 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("replay after raising max_skew: %v", got)
	}
	// Once everything remembered under the old window is gone, the new
	// window applies.
	clk.add(71 * time.Second)
	old := signFrame(t, e.codec, codec.Frame{Cmd: cmdEcho, Seq: 1}, 7, clk.at(-50*time.Second), 43)
	if got := testkit.Flood(t, e.addr, old, 1); got[codec.ResultOK] != 1 {
		t.Fatalf("50s-old frame under max_skew 60s: %v", got)
	}
}

// TestConcurrentVerify: many connections verifying at once, each sending
// the same captured frames and its own: every captured frame is accepted
// exactly once, every own frame once (run with -race).
func TestConcurrentVerify(t *testing.T) {
	const conns, shared, own = 6, 300, 300
	e := newEnv(t, envOpts{auth: authPolicy(30*time.Second, 0)})
	now := func(int) uint64 { return uint64(time.Now().UnixMilli()) }
	common := signedBatch(t, e.codec, cmdUnrouted, []uint32{7, 8, 9}, now, 1, shared)
	var wg sync.WaitGroup
	results := make([]map[uint16]int, conns)
	for c := range conns {
		wire := append(append([]byte(nil), common...), signedBatch(t, e.codec, cmdUnrouted, []uint32{8}, now, uint64(10_000*(c+1)), own)...)
		wg.Add(1)
		go func() { defer wg.Done(); results[c] = testkit.Flood(t, e.addr, wire, shared+own) }()
	}
	wg.Wait()
	var passed, refused int
	for _, r := range results {
		passed += r[codec.ResultUnknownCommand]
		refused += r[codec.ResultUnauthenticated]
	}
	if passed != shared+conns*own || refused != (conns-1)*shared {
		t.Fatalf("passed %d refused %d, want %d and %d", passed, refused, shared+conns*own, (conns-1)*shared)
	}
}

// limitsOf returns t's (resolved) limits, for a table that replaces it.
func limitsOf(t *Table) Limits {
	return Limits{MaxInFlight: t.MaxInFlight, IdleTimeout: t.IdleTimeout, ReadTimeout: t.ReadTimeout}
}

// withAuthz swaps in a copy of e's table with policy p.
func withAuthz(e *env, auth *AuthPolicy, p *config.Authz) {
	routes := make([]Route, 0)
	for _, r := range e.srv.Table().Routes() {
		routes = append(routes, *r)
	}
	t := NewTable("priv", routes, limitsOf(e.srv.Table()), auth, e.metrics)
	t.Authz = authz.New(p)
	e.srv.SetTable(t)
}

// TestAuthorizeKeyCmd: a key id may send only the cmds its rule lists;
// anything else gets result 4 and never reaches the backend.
func TestAuthorizeKeyCmd(t *testing.T) {
	var backend atomic.Int64
	gate := func(_ context.Context, req []byte) ([]byte, error) { backend.Add(1); return req, nil }
	auth := authPolicy(30*time.Second, 0)
	e := newEnv(t, envOpts{auth: auth, extra: map[string]demo.Handler{"Gate": gate}})
	withAuthz(e, auth, &config.Authz{Allow: []config.AuthzRule{
		{KeyIDs: []uint32{7}, Cmds: []uint32{cmdGate, cmdEcho}},
		{KeyIDs: []uint32{8}, Cmds: []uint32{cmdEcho}},
	}})
	now := uint64(time.Now().UnixMilli())
	for i, tc := range []struct {
		key  uint32
		cmd  uint32
		want uint16
	}{
		{7, cmdGate, codec.ResultOK},
		{8, cmdEcho, codec.ResultOK},
		{8, cmdGate, codec.ResultForbidden},
		{9, cmdGate, codec.ResultForbidden},     // authenticated, no rule
		{7, cmdMeta, codec.ResultForbidden},     // routed, not granted
		{7, cmdUnrouted, codec.ResultForbidden}, // not even told it is unrouted
	} {
		raw := signFrame(t, e.codec, codec.Frame{Cmd: tc.cmd, Seq: 1, Body: []byte("x")}, tc.key, now, uint64(i+1))
		if got := testkit.Flood(t, e.addr, raw, 1); got[tc.want] != 1 {
			t.Errorf("key %d cmd %d: %v, want result %d", tc.key, tc.cmd, got, tc.want)
		}
	}
	if n := backend.Load(); n != 1 {
		t.Fatalf("backend saw %d calls, want 1 (the allowed one)", n)
	}
	if n := authFailures(e, authz.ReasonForbidden); n != 4 {
		t.Fatalf("forbidden failures %d, want 4", n)
	}
	// A bad MAC is still result 3, not 4.
	raw := signFrame(t, e.codec, codec.Frame{Cmd: cmdGate, Seq: 1}, 7, now, 99)
	raw[len(raw)-2] ^= 1
	if got := testkit.Flood(t, e.addr, raw, 1); got[codec.ResultUnauthenticated] != 1 {
		t.Fatalf("bad MAC: %v", got)
	}
	if n := backend.Load(); n != 1 {
		t.Fatalf("backend saw %d calls", n)
	}
}

// TestTableFromConfigAuthz: the config's policy reaches the table.
func TestTableFromConfigAuthz(t *testing.T) {
	cfg, err := config.Parse([]byte(`
listeners:
  - name: in
    kind: private
    address: 127.0.0.1:0
    auth: {keys: {1: a, 2: b}, max_skew: 5s}
    authz:
      allow:
        - {key_ids: [1], cmds: [10, 11]}
    routes:
      - {cmd: 10, method: /demo.Echo/Echo, upstream: g}
upstreams:
  - {name: g, protocol: grpc, endpoints: [127.0.0.1:9]}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := TableFromConfig(&cfg.Listeners[0], cfg.Defaults, func(string) Target { return Target{GRPC: nopUpstream{}} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Auth.MaxNonces != config.DefaultMaxNonces(5*time.Second) || tbl.Auth.MaxNonces != 100_000 {
		t.Fatalf("max_nonces %d", tbl.Auth.MaxNonces)
	}
	if !tbl.Authz.AllowCmd(1, 11) || tbl.Authz.AllowCmd(2, 10) || tbl.Authz.AllowCmd(1, 12) {
		t.Fatal(fmt.Sprintf("policy %+v", tbl.Authz))
	}
}

type nopUpstream struct{ Upstream }

func (nopUpstream) Acquire() bool { return true }
func (nopUpstream) Release()      {}
