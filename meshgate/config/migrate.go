package config

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Migration control (docs/migration.md): a route's traffic split between
// backends, shadow traffic with diff, and operator overrides.

// Split modes (routes[].split.by).
const (
	SplitByUINBucket = "uin_bucket" // stable hash of uin into 10,000 buckets (default)
	SplitByUINRange  = "uin_range"  // explicit uin ranges per backend
	SplitByWeight    = "weight"     // per-request weights (no stickiness)
)

// Migration defaults and bounds.
const (
	MaxSplitBackends          = 8
	MaxAllowUINs              = 10_000_000
	MaxAllowFileBytes         = 256 << 20
	DefaultShadowConcurrency  = 16
	DefaultShadowQueue        = 128
	DefaultShadowDiffsKeep    = 100
	DefaultShadowDiffsMaxBody = 256
	DefaultMigrateWindow      = 10 * time.Second
)

// Migrate is the top-level migration control section (key "migrate").
type Migrate struct {
	// Token, when set, is required (Authorization: Bearer) on the admin
	// API's /migrate mutations from non-loopback peers. Without a token
	// only loopback peers may change overrides.
	Token string `yaml:"token,omitempty" json:"-"`
	// TokenFile holds the token (first line); alternative to Token,
	// re-read with the config.
	TokenFile string `yaml:"token_file,omitempty" json:"token_file,omitempty"`
	// StateFile, when set, persists operator overrides (rollback) so they
	// survive a restart; they always survive reloads.
	StateFile string `yaml:"state_file,omitempty" json:"state_file,omitempty"`
	// Window is the span /migrate/status computes rates and p99 over
	// (default 10s, 2s..5m).
	Window time.Duration `yaml:"window,omitempty" json:"window,omitempty"`

	token string // resolved Token or TokenFile content
}

// ResolvedToken is Token, or TokenFile's first line once validated ("" =
// loopback only).
func (m *Migrate) ResolvedToken() string { return m.token }

// Split divides one route's requests between backends (upstreams). It is
// evaluated per request in this order: operator override, allow-list,
// callers, then by: uin_bucket | uin_range | weight; requests without a
// uin (uin 0) go by weight.
type Split struct {
	// Name is the route's id in metrics, /migrate/* and `meshgate migrate`;
	// default "<listener>/<cmd>" (private) or "<listener><method>" (grpc).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// By is uin_bucket (default), uin_range or weight.
	By string `yaml:"by,omitempty" json:"by,omitempty"`
	// Backends are the sides; backends[0] is the base side ("legacy") that
	// takes every request no rule sends elsewhere. The route's upstream,
	// when set, must be backends[0].upstream.
	Backends []SplitBackend `yaml:"backends" json:"backends"`
	// Allow sends listed uins to one backend whatever the split.
	Allow *SplitAllow `yaml:"allow,omitempty" json:"allow,omitempty"`
	// Callers send requests by caller (ext 4 / x-mgp-caller) to a backend.
	Callers []SplitCaller `yaml:"callers,omitempty" json:"callers,omitempty"`
}

// SplitBackend is one side of a split.
type SplitBackend struct {
	Upstream string `yaml:"upstream" json:"upstream"`
	// Percent (by: uin_bucket) is this backend's share of the 10,000 uin
	// buckets, 0–100 with at most two decimals. Buckets are given out in
	// backend order from bucket 0, so widening a percent only adds users.
	// backends[0] takes the rest; if it sets a percent, all must sum to 100.
	Percent float64 `yaml:"percent,omitempty" json:"percent,omitempty"`
	// Weight is the share of requests without a uin (and of every request
	// with by: weight). Default, when no backend sets one: by uin_bucket the
	// percents, otherwise everything to backends[0].
	Weight uint32 `yaml:"weight,omitempty" json:"weight,omitempty"`
	// UINRanges (by: uin_range) are the inclusive uin ranges of this backend.
	UINRanges []UINRange `yaml:"uin_ranges,omitempty" json:"uin_ranges,omitempty"`
	// Method is the gRPC method called when this backend speaks gRPC
	// (default: the route's method).
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Cmd is the command sent when this backend speaks the private protocol
	// (default: the route's cmd).
	Cmd uint32 `yaml:"cmd,omitempty" json:"cmd,omitempty"`
}

// UINRange is an inclusive range of uins.
type UINRange struct {
	Min uint64 `yaml:"min" json:"min"`
	Max uint64 `yaml:"max" json:"max"`
}

// SplitAllow is an allow-list of uins pinned to one backend.
type SplitAllow struct {
	// Upstream is the backend the listed uins go to (default: the last
	// backend).
	Upstream string `yaml:"upstream,omitempty" json:"upstream,omitempty"`
	// UINs listed inline.
	UINs []uint64 `yaml:"uins,omitempty" json:"uins,omitempty"`
	// File lists uins, one per line (# comments, blank lines ignored);
	// relative to the config file; re-read on every reload.
	File string `yaml:"file,omitempty" json:"file,omitempty"`

	fromFile []uint64
}

// AllUINs returns the inline and file uins, sorted and deduplicated.
func (a *SplitAllow) AllUINs() []uint64 {
	out := make([]uint64, 0, len(a.UINs)+len(a.fromFile))
	out = append(out, a.UINs...)
	out = append(out, a.fromFile...)
	slices.Sort(out)
	return slices.Compact(out)
}

// SplitCaller sends a caller's requests to a backend.
type SplitCaller struct {
	Caller   string `yaml:"caller" json:"caller"`
	Upstream string `yaml:"upstream" json:"upstream"`
}

// Shadow mirrors a fraction of a route's requests to a second backend and
// compares replies; the primary is never delayed or affected.
type Shadow struct {
	// Upstream receives the copies (either protocol).
	Upstream string `yaml:"upstream" json:"upstream"`
	// Method (gRPC shadow) / Cmd (private shadow); default the route's.
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	Cmd    uint32 `yaml:"cmd,omitempty" json:"cmd,omitempty"`
	// Percent of requests mirrored, (0, 100], two decimals; default 100.
	Percent float64 `yaml:"percent,omitempty" json:"percent,omitempty"`
	// Oneway mirrors ONEWAY requests too (default never: they may not be
	// idempotent and have no reply to compare).
	Oneway bool `yaml:"oneway,omitempty" json:"oneway,omitempty"`
	// IgnoreExt lists extension keys left out of the comparison.
	IgnoreExt []uint16 `yaml:"ignore_ext,omitempty" json:"ignore_ext,omitempty"`
	// Timeout of a shadow call (default: the route's timeout).
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Concurrency is the number of shadow calls at once (default 16, ≤1024).
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Queue is how many copies may wait (default 128, ≤65536); past it a
	// copy is dropped and counted.
	Queue int `yaml:"queue,omitempty" json:"queue,omitempty"`
	// Diffs configures the mismatch log (/migrate/diffs).
	Diffs ShadowDiffs `yaml:"diffs,omitempty" json:"diffs"`
}

// ShadowDiffs bounds the kept mismatches.
type ShadowDiffs struct {
	// Keep is how many recent mismatches are kept (default 100, ≤10000).
	Keep int `yaml:"keep,omitempty" json:"keep,omitempty"`
	// Sample keeps one mismatch in Sample (default 1 = every one); counts
	// are always exact.
	Sample int `yaml:"sample,omitempty" json:"sample,omitempty"`
	// ShowBodies shows up to MaxBody bytes of both bodies; default off:
	// bodies are shown as length + hash only.
	ShowBodies bool `yaml:"show_bodies,omitempty" json:"show_bodies,omitempty"`
	// MaxBody bytes shown per body when ShowBodies (default 256, ≤65536).
	MaxBody int `yaml:"max_body,omitempty" json:"max_body,omitempty"`
}

// RouteIDs returns the id of every route of l, in order: split.name when
// set, else "<listener>/<cmd>" (private) or "<listener><method>" (grpc),
// with "#<index>" appended when that id is already taken in l.
func RouteIDs(l *Listener) []string {
	ids := make([]string, len(l.Routes))
	seen := map[string]bool{}
	for j := range l.Routes {
		if s := l.Routes[j].Split; s != nil && s.Name != "" {
			seen[s.Name] = true
		}
	}
	for j := range l.Routes {
		r := &l.Routes[j]
		if r.Split != nil && r.Split.Name != "" {
			ids[j] = r.Split.Name
			continue
		}
		id := l.Name + r.Method
		if l.Kind != KindGRPC {
			id = l.Name + "/" + strconv.FormatUint(uint64(r.Cmd), 10)
		}
		if seen[id] {
			id += "#" + strconv.Itoa(j)
		}
		seen[id] = true
		ids[j] = id
	}
	return ids
}

// PercentBuckets converts a percent (two decimals) to a bucket count out of
// 10,000.
func PercentBuckets(p float64) uint32 { return uint32(math.Round(p * 100)) }

func checkPercent(e *errs, field string, p float64) bool {
	if math.IsNaN(p) || p < 0 || p > 100 {
		e.add(field, "must be in [0, 100], got %v", p)
		return false
	}
	if math.Abs(p*100-math.Round(p*100)) > 1e-6 {
		e.add(field, "at most two decimals (a bucket is 0.01%%), got %v", p)
		return false
	}
	return true
}

func (c *Config) applyMigrateDefaults() {
	setDefault(&c.Migrate.Window, DefaultMigrateWindow)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		for j := range l.Routes {
			r := &l.Routes[j]
			if s := r.Split; s != nil {
				setDefault(&s.By, SplitByUINBucket)
				if r.Upstream == "" && len(s.Backends) > 0 {
					r.Upstream = s.Backends[0].Upstream
				}
				// what backends[0] is sent is what the route sends
				if len(s.Backends) > 0 && r.Upstream == s.Backends[0].Upstream {
					switch b0 := s.Backends[0]; {
					case l.Kind == KindPrivate && r.Method == "" && b0.Method != "":
						r.Method = b0.Method
					case l.Kind == KindGRPC && r.Cmd == 0 && b0.Cmd != 0:
						r.Cmd = b0.Cmd
					}
				}
				if s.Allow != nil && s.Allow.Upstream == "" && len(s.Backends) > 0 {
					s.Allow.Upstream = s.Backends[len(s.Backends)-1].Upstream
				}
			}
			if sh := r.Shadow; sh != nil {
				setDefault(&sh.Percent, 100)
				setDefault(&sh.Timeout, r.Timeout)
				setDefault(&sh.Concurrency, DefaultShadowConcurrency)
				setDefault(&sh.Queue, DefaultShadowQueue)
				setDefault(&sh.Diffs.Keep, DefaultShadowDiffsKeep)
				setDefault(&sh.Diffs.Sample, 1)
				setDefault(&sh.Diffs.MaxBody, DefaultShadowDiffsMaxBody)
			}
		}
	}
}

// validateMigrate checks migrate.* and every route's split and shadow; it
// also loads allow-list files and the token file.
func (c *Config) validateMigrate(e *errs) {
	m := &c.Migrate
	checkRange(e, "migrate.window", m.Window, 2*time.Second, 5*time.Minute)
	switch {
	case m.Token != "" && m.TokenFile != "":
		e.add("migrate.token_file", "set token or token_file, not both")
	case m.TokenFile != "":
		b, err := os.ReadFile(c.Path(m.TokenFile))
		if err != nil {
			e.add("migrate.token_file", "%v", err)
			break
		}
		line, _, _ := strings.Cut(string(b), "\n")
		m.token = strings.TrimSpace(line)
		if len(m.token) < 16 {
			e.add("migrate.token_file", "token must be at least 16 characters")
		}
	case m.Token != "":
		m.token = m.Token
		if len(m.token) < 16 {
			e.add("migrate.token", "must be at least 16 characters")
		}
	}
	ups := c.upstreamsByName()
	ids := map[string]string{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		rids := RouteIDs(l)
		for j := range l.Routes {
			r := &l.Routes[j]
			rf := fmt.Sprintf("listeners[%d].routes[%d]", i, j)
			if prev, dup := ids[rids[j]]; dup {
				e.add(rf+".split.name", "route id %q already used by %s", rids[j], prev)
			}
			ids[rids[j]] = rf
			if r.Split != nil {
				c.validateSplit(e, rf, l, r, ups)
			}
			if r.Shadow != nil {
				validateShadow(e, rf+".shadow", l, r, ups)
			}
		}
	}
}

func (c *Config) validateSplit(e *errs, rf string, l *Listener, r *Route, ups map[string]*Upstream) {
	s := r.Split
	f := rf + ".split"
	if s.Name != "" && strings.ContainsAny(s.Name, " \t\r\n\x00?#&") {
		e.add(f+".name", "must not contain spaces, ?, # or &")
	}
	checkOneOf(e, f+".by", s.By, SplitByUINBucket, SplitByUINRange, SplitByWeight)
	if len(s.Backends) == 0 || len(s.Backends) > MaxSplitBackends {
		e.add(f+".backends", "must list 1 to %d backends, got %d", MaxSplitBackends, len(s.Backends))
		return
	}
	if r.Upstream != s.Backends[0].Upstream {
		e.add(rf+".upstream", "%q must be empty or equal split.backends[0].upstream (%q)", r.Upstream, s.Backends[0].Upstream)
	}
	names := map[string]bool{}
	var buckets uint32
	var weights uint64
	type rng struct {
		UINRange
		field string
	}
	var ranges []rng
	for k := range s.Backends {
		b := &s.Backends[k]
		bf := fmt.Sprintf("%s.backends[%d]", f, k)
		u := checkUpstreamRef(e, bf+".upstream", b.Upstream, ups)
		if u != nil && names[b.Upstream] {
			e.add(bf+".upstream", "upstream %q listed twice", b.Upstream)
		}
		names[b.Upstream] = true
		if u != nil {
			checkTargetFields(e, bf, l, r, u, b.Method, b.Cmd)
		}
		if b.Percent != 0 && s.By != SplitByUINBucket {
			e.add(bf+".percent", "only with by: %s", SplitByUINBucket)
		}
		if checkPercent(e, bf+".percent", b.Percent) {
			buckets += PercentBuckets(b.Percent)
		}
		weights += uint64(b.Weight)
		if len(b.UINRanges) > 0 && s.By != SplitByUINRange {
			e.add(bf+".uin_ranges", "only with by: %s", SplitByUINRange)
		}
		for q, ur := range b.UINRanges {
			qf := fmt.Sprintf("%s.uin_ranges[%d]", bf, q)
			if ur.Min > ur.Max {
				e.add(qf, "min %d greater than max %d", ur.Min, ur.Max)
				continue
			}
			ranges = append(ranges, rng{ur, qf})
		}
	}
	switch {
	case s.Backends[0].Percent != 0 && buckets != 10000:
		e.add(f+".backends", "backends[0] sets a percent, so the percents must sum to 100 (got %v)", float64(buckets)/100)
	case buckets > 10000:
		e.add(f+".backends", "percents sum to %v, more than 100", float64(buckets)/100)
	}
	if s.By == SplitByWeight && weights == 0 {
		e.add(f+".backends", "by: weight needs a weight > 0 on some backend")
	}
	slices.SortFunc(ranges, func(a, b rng) int { return cmp.Compare(a.Min, b.Min) })
	for k := 1; k < len(ranges); k++ {
		if ranges[k].Min <= ranges[k-1].Max {
			e.add(ranges[k].field, "overlaps %s", ranges[k-1].field)
		}
	}
	if a := s.Allow; a != nil {
		af := f + ".allow"
		if !names[a.Upstream] {
			e.add(af+".upstream", "%q is not one of the split's backends", a.Upstream)
		}
		if len(a.UINs) > MaxAllowUINs {
			e.add(af+".uins", "at most %d uins", MaxAllowUINs)
		}
		a.fromFile = nil
		if a.File != "" {
			uins, err := readUINFile(c.Path(a.File))
			if err != nil {
				e.add(af+".file", "%v", err)
			}
			a.fromFile = uins
		}
	}
	callers := map[string]bool{}
	for k, cl := range s.Callers {
		cf := fmt.Sprintf("%s.callers[%d]", f, k)
		checkName(e, cf+".caller", cl.Caller, "caller", callers)
		if !names[cl.Upstream] {
			e.add(cf+".upstream", "%q is not one of the split's backends", cl.Upstream)
		}
	}
}

// readUINFile parses an allow-list file: one decimal uin per line, blank
// lines and "#" comments ignored.
func readUINFile(path string) ([]uint64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxAllowFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxAllowFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []uint64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		u, err := strconv.ParseUint(line, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a uin", path, n, line)
		}
		if len(out) == MaxAllowUINs {
			return nil, fmt.Errorf("%s: more than %d uins", path, MaxAllowUINs)
		}
		out = append(out, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// checkTargetFields checks what a split backend or shadow (field f) sends
// its upstream u, given the listener kind:
//
//	private listener → grpc upstream     method (default the route's) required
//	private listener → private upstream  cmd optional (rewrite); no method
//	grpc listener    → private upstream  cmd optional (default the route's)
//	grpc listener    → grpc upstream     method optional (rewrite; not of a wildcard route); no cmd
func checkTargetFields(e *errs, f string, l *Listener, r *Route, u *Upstream, method string, cmd uint32) {
	switch {
	case l.Kind == KindPrivate && u.Protocol == ProtoGRPC:
		m := method
		setDefault(&m, r.Method)
		if err := CheckMethod(m, false); err != nil {
			e.add(f+".method", "%v (the gRPC method called on %q)", err, u.Name)
		}
	case l.Kind == KindPrivate && u.Protocol == ProtoPrivate:
		if method != "" {
			e.add(f+".method", "not used with private upstream %q (cmd rewrites the command)", u.Name)
		}
	case l.Kind == KindGRPC && u.Protocol == ProtoGRPC:
		if cmd != 0 {
			e.add(f+".cmd", "not used with grpc upstream %q (method rewrites the method)", u.Name)
		}
		if method != "" {
			if err := CheckMethod(method, false); err != nil {
				e.add(f+".method", "%v", err)
			} else if strings.HasSuffix(r.Method, "/*") {
				e.add(f+".method", "cannot rewrite the wildcard route %q to one method", r.Method)
			}
		}
	case l.Kind == KindGRPC && u.Protocol == ProtoPrivate:
		if method != "" {
			e.add(f+".method", "not used with private upstream %q (cmd is the command sent)", u.Name)
		}
	}
}

func validateShadow(e *errs, f string, l *Listener, r *Route, ups map[string]*Upstream) {
	sh := r.Shadow
	if u := checkUpstreamRef(e, f+".upstream", sh.Upstream, ups); u != nil {
		checkTargetFields(e, f, l, r, u, sh.Method, sh.Cmd)
	}
	if checkPercent(e, f+".percent", sh.Percent) && sh.Percent == 0 {
		e.add(f+".percent", "must be greater than 0")
	}
	if sh.Oneway && l.Kind == KindGRPC && !r.Oneway {
		e.add(f+".oneway", "the route is not oneway")
	}
	checkNotNegative(e, f+".timeout", sh.Timeout)
	checkRange(e, f+".concurrency", sh.Concurrency, 1, 1024)
	checkRange(e, f+".queue", sh.Queue, 1, 65536)
	checkRange(e, f+".diffs.keep", sh.Diffs.Keep, 1, 10000)
	checkMin(e, f+".diffs.sample", sh.Diffs.Sample, 1)
	checkRange(e, f+".diffs.max_body", sh.Diffs.MaxBody, 1, 65536)
}
