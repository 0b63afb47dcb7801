package split

import (
	"math"
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/override"
)

// The bucket of a uin must never change across versions: these values are
// the published splitmix64 finalizer. A change here moves live users.
func TestBucketGolden(t *testing.T) {
	for _, c := range []struct {
		uin, mix uint64
		bucket   uint32
	}{
		{1, 6238072747940578789, 8789},
		{2, 15839785061582574730, 4730},
		{42, 12058926934050108962, 8962},
		{10000, 11045657849713844352, 4352},
		{123456789, 17445968401720671584, 1584},
		{1 << 63, 2720858781877447050, 7050},
	} {
		if got := Mix64(c.uin); got != c.mix {
			t.Errorf("Mix64(%d) = %d, want %d", c.uin, got, c.mix)
		}
		if got := Bucket(c.uin); got != c.bucket {
			t.Errorf("Bucket(%d) = %d, want %d", c.uin, got, c.bucket)
		}
	}
}

func twoSided(percent float64) *config.Split {
	return &config.Split{By: config.SplitByUINBucket, Backends: []config.SplitBackend{
		{Upstream: "legacy"}, {Upstream: "new", Percent: percent},
	}}
}

func mustRule(t testing.TB, s *config.Split, pin *override.Pin) *Rule {
	t.Helper()
	r, err := New("r", s, pin)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Widening the split only moves users from legacy to new (never back), and
// the share of users on the new side is the configured percent (±0.5 % on
// 100,000 sequential uins).
func TestWideningOnlyAddsUsers(t *testing.T) {
	const n = 100000
	prev := make([]bool, n+1)
	for _, p := range []float64{0, 0.01, 1, 5, 10, 33.33, 50, 99.99, 100} {
		r := mustRule(t, twoSided(p), nil)
		onNew := 0
		for uin := uint64(1); uin <= n; uin++ {
			k, why := r.Pick(uin, "")
			if why != ReasonBucket {
				t.Fatalf("reason %v", why)
			}
			isNew := k == 1
			if prev[uin] && !isNew {
				t.Fatalf("uin %d moved back to legacy when widening to %v%%", uin, p)
			}
			if isNew != (Bucket(uin) < uint32(math.Round(p*100))) {
				t.Fatalf("uin %d (bucket %d) at %v%%: new=%v", uin, Bucket(uin), p, isNew)
			}
			prev[uin] = isNew
			if isNew {
				onNew++
			}
		}
		if got := float64(onNew) / n * 100; math.Abs(got-p) > 0.5 {
			t.Errorf("at %v%%: %.3f%% of users on new", p, got)
		}
	}
}

func TestPickOrder(t *testing.T) {
	s := twoSided(0)
	s.Allow = &config.SplitAllow{Upstream: "new", UINs: []uint64{7, 1000, 5}}
	s.Callers = []config.SplitCaller{{Caller: "billing", Upstream: "new"}}
	st := override.New(nil)
	r := mustRule(t, s, st.Pin("r"))
	check := func(uin uint64, caller string, wantK int, want Reason) {
		t.Helper()
		k, why := r.Pick(uin, caller)
		if k != wantK || why != want {
			t.Errorf("Pick(%d, %q) = %d %v, want %d %v", uin, caller, k, why, wantK, want)
		}
	}
	check(7, "", 1, ReasonAllow)
	check(1000, "x", 1, ReasonAllow)
	check(8, "", 0, ReasonBucket)
	check(8, "billing", 1, ReasonCaller)
	check(0, "", 0, ReasonWeight) // no uin: weights = percents (0 % new)
	if err := st.Set("r", "legacy", "test"); err != nil {
		t.Fatal(err)
	}
	check(7, "billing", 0, ReasonOverride)
	if _, err := st.Clear("r"); err != nil {
		t.Fatal(err)
	}
	check(7, "", 1, ReasonAllow)
	if err := st.Set("r", "gone", ""); err != nil { // an override naming no backend of this rule is ignored
		t.Fatal(err)
	}
	check(7, "", 1, ReasonAllow)
}

func TestUINRange(t *testing.T) {
	s := &config.Split{By: config.SplitByUINRange, Backends: []config.SplitBackend{
		{Upstream: "legacy"},
		{Upstream: "a", UINRanges: []config.UINRange{{Min: 100, Max: 199}, {Min: 1000, Max: 1000}}},
		{Upstream: "b", UINRanges: []config.UINRange{{Min: 200, Max: 299}}},
	}}
	r := mustRule(t, s, nil)
	for _, c := range []struct {
		uin  uint64
		want int
	}{{1, 0}, {99, 0}, {100, 1}, {199, 1}, {200, 2}, {299, 2}, {300, 0}, {999, 0}, {1000, 1}, {1001, 0}, {math.MaxUint64, 0}} {
		if k, _ := r.Pick(c.uin, ""); k != c.want {
			t.Errorf("uin %d -> %d, want %d", c.uin, k, c.want)
		}
	}
	if k, why := r.Pick(0, ""); k != 0 || why != ReasonWeight {
		t.Errorf("uin 0 -> %d %v", k, why)
	}
}

func TestWeights(t *testing.T) {
	s := &config.Split{By: config.SplitByWeight, Backends: []config.SplitBackend{
		{Upstream: "legacy", Weight: 3}, {Upstream: "new", Weight: 1},
	}}
	r := mustRule(t, s, nil)
	counts := [2]int{}
	for range 40000 {
		k, _ := r.Pick(uint64(1+counts[0]), "")
		counts[k]++
	}
	if f := float64(counts[1]) / 40000; math.Abs(f-0.25) > 0.02 {
		t.Errorf("new got %.3f of requests, want 0.25", f)
	}
	// by uin_bucket, requests without a uin follow the percents by default
	r = mustRule(t, twoSided(100), nil)
	for range 100 {
		if k, _ := r.Pick(0, ""); k != 1 {
			t.Fatal("uin 0 at 100% went to legacy")
		}
	}
}

func TestThreeBackendsBuckets(t *testing.T) {
	s := &config.Split{Backends: []config.SplitBackend{{Upstream: "l"}, {Upstream: "a", Percent: 10}, {Upstream: "b", Percent: 5.5}}}
	r := mustRule(t, s, nil)
	b := r.Backends()
	if b[1].BucketLo != 0 || b[1].BucketHi != 1000 || b[2].BucketLo != 1000 || b[2].BucketHi != 1550 || b[0].BucketLo != 1550 || b[0].BucketHi != Buckets {
		t.Fatalf("buckets %+v", b)
	}
	sh := r.Share()
	if math.Abs(sh[0]-0.845) > 1e-9 || math.Abs(sh[2]-0.055) > 1e-9 {
		t.Fatalf("share %v", sh)
	}
}

func TestNewRejects(t *testing.T) {
	for name, s := range map[string]*config.Split{
		"none":    {},
		"dup":     {Backends: []config.SplitBackend{{Upstream: "a"}, {Upstream: "a"}}},
		"over":    {Backends: []config.SplitBackend{{Upstream: "a"}, {Upstream: "b", Percent: 60}, {Upstream: "c", Percent: 50}}},
		"allowto": {Backends: []config.SplitBackend{{Upstream: "a"}}, Allow: &config.SplitAllow{Upstream: "x"}},
		"weight":  {By: config.SplitByWeight, Backends: []config.SplitBackend{{Upstream: "a"}}},
		"overlap": {By: config.SplitByUINRange, Backends: []config.SplitBackend{{Upstream: "a", UINRanges: []config.UINRange{{Min: 1, Max: 5}}}, {Upstream: "b", UINRanges: []config.UINRange{{Min: 5, Max: 6}}}}},
	} {
		if _, err := New("r", s, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// pickSplit is twoSided(10) with an allow-list of n uins and a caller
// rule: every lookup Pick may do.
func pickSplit(n int) *config.Split {
	s := twoSided(10)
	allow := make([]uint64, n)
	for i := range allow {
		allow[i] = uint64(i * 7)
	}
	s.Allow = &config.SplitAllow{UINs: allow}
	s.Callers = []config.SplitCaller{{Caller: "billing", Upstream: "new"}}
	return s
}

func TestPickAllocs(t *testing.T) {
	s := pickSplit(10000)
	st := override.New(nil)
	r := mustRule(t, s, st.Pin("r"))
	caller := []byte("billing")
	var sink int
	if a := testing.AllocsPerRun(1000, func() {
		for u := uint64(0); u < 50; u++ {
			k, _ := r.Pick(u, "other")
			sink += k
			k, _ = r.PickBytes(u, caller)
			sink += k
		}
	}); a != 0 {
		t.Fatalf("Pick allocates %v per run", a)
	}
	_ = st.Set("r", "new", "")
	if a := testing.AllocsPerRun(100, func() { k, _ := r.Pick(1, ""); sink += k }); a != 0 {
		t.Fatalf("pinned Pick allocates %v", a)
	}
	_ = sink
}

func BenchmarkPick(b *testing.B) {
	s := pickSplit(100000)
	r := mustRule(b, s, override.New(nil).Pin("r"))
	b.ReportAllocs()
	var sink int
	for i := 0; b.Loop(); i++ {
		k, _ := r.Pick(uint64(i)|1, "web")
		sink += k
	}
	_ = sink
}
