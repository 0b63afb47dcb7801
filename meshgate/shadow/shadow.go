// Package shadow mirrors a fraction of a route's requests to a shadow
// backend of either protocol and compares the shadow's reply with the
// primary's (routes[].shadow in the config; docs/migration.md).
//
// The primary never waits for the shadow: the data path hands a Mirror a
// copy of the request together with the primary's outcome once the primary
// has answered (Submit), and Submit never blocks — when the bounded queue is
// full the copy is dropped and counted. A fixed number of workers
// (concurrency) call the shadow backend with their own timeout, compare, and
// count:
//
//	meshgate_shadow_requests_total{route}             copies accepted
//	meshgate_shadow_dropped_total{route}              copies dropped (queue full or mirror closed)
//	meshgate_shadow_matched_total{route}
//	meshgate_shadow_mismatched_total{route,kind}      kind: result | body | ext | error | timeout
//	meshgate_shadow_duration_seconds{route}           shadow call latency
//
// Comparison, in order: the shadow call failed without a reply (timeout:
// the shadow timeout expired; error: anything else), the result differs
// (private result space: gRPC statuses map through the one table in
// PROTOCOL.md, so a private and a gRPC backend compare), the body bytes
// differ, the application extensions (keys ≥ 0x8000, minus ignore_ext)
// differ. The status message (ext 5) is shown but not compared.
//
// The most recent mismatches are kept per route in a bounded log
// (diffs.keep, one in diffs.sample) with bodies shown as length + SHA-256
// prefix unless diffs.show_bodies.
package shadow

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/mapping"
)

// Mismatch kinds.
const (
	KindResult  = "result"
	KindBody    = "body"
	KindExt     = "ext"
	KindError   = "error"
	KindTimeout = "timeout"
)

var kinds = []string{KindResult, KindBody, KindExt, KindError, KindTimeout}

// Request is the copy of a request sent to the shadow backend. The Mirror
// owns it after Submit.
type Request struct {
	UIN    uint64
	Caller string
	// Method is the incoming gRPC method (grpc listeners) and Cmd the
	// incoming cmd (private listeners); the Caller adapter picks what the
	// shadow backend needs.
	Method string
	Cmd    uint32
	Body   []byte
	Ext    []codec.Ext // application extensions to forward
	// Oneway requests (mirrored only with shadow.oneway) expect no reply:
	// a send without error counts as matched.
	Oneway bool
}

// ErrSkipped, as an Outcome's Err, says the shadow call was not made (its
// upstream was retired by a reload): counted as dropped, not compared.
var ErrSkipped = errors.New("shadow: skipped")

// Outcome is one reply in protocol-neutral form.
type Outcome struct {
	// Result in the private result space (0 = OK); a gRPC status maps
	// through codec.ResultFor.
	Result uint16
	// Message is the error message (ext 5 / status message); not compared.
	Message string
	Body    []byte
	Ext     []codec.Ext
	// Err is set when the call produced no reply at all (connection
	// refused, pool closed, deadline): the result is then meaningless.
	Err error
}

// Caller calls the shadow backend. Call must honour ctx (the shadow
// timeout) and must not keep req or the returned slices' backing arrays
// beyond the call unless it owns them.
type Caller interface {
	Call(ctx context.Context, req *Request) Outcome
}

// CallerFunc adapts a function to Caller.
type CallerFunc func(ctx context.Context, req *Request) Outcome

// Call calls f.
func (f CallerFunc) Call(ctx context.Context, req *Request) Outcome { return f(ctx, req) }

type job struct {
	req     Request
	primary Outcome
}

// Mirror is one route's shadow: a bounded queue and a fixed set of workers.
// It belongs to one config generation; Close it when the generation retires.
type Mirror struct {
	route     string
	caller    Caller
	timeout   time.Duration
	threshold uint64 // of 10,000
	oneway    bool
	ignore    []uint16
	rs        *routeStats
	log       *slog.Logger

	conc   int
	start  sync.Once
	jobs   chan job
	stop   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts route's mirror with cfg (defaults applied) calling caller.
func New(route string, cfg *config.Shadow, caller Caller, m *Metrics, log *slog.Logger) *Mirror {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conc, queue := max(cfg.Concurrency, 1), max(cfg.Queue, 1)
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	pct := cfg.Percent
	if pct == 0 {
		pct = 100
	}
	mi := &Mirror{
		route: route, caller: caller, timeout: timeout,
		threshold: uint64(config.PercentBuckets(pct)), oneway: cfg.Oneway,
		ignore: slices.Clone(cfg.IgnoreExt),
		rs:     m.route(route, cfg.Diffs),
		log:    log.With("component", "shadow", "route", route),
		jobs:   make(chan job, queue), stop: make(chan struct{}),
	}
	mi.conc = conc
	return mi
}

// spawn starts the workers (on the first Submit: a mirror built for a
// generation that never serves starts nothing).
func (m *Mirror) spawn() {
	m.wg.Add(m.conc)
	for range m.conc {
		go m.work()
	}
}

// Want reports whether this request should be mirrored: never a ONEWAY one
// unless configured, and percent of the rest. Allocation-free.
func (m *Mirror) Want(oneway bool) bool {
	if m == nil || (oneway && !m.oneway) {
		return false
	}
	return m.threshold >= 10000 || rand.Uint64N(10000) < m.threshold
}

// Submit hands the mirror a request and the primary's outcome without
// blocking; it copies req.Body, req.Ext and primary's body and extensions
// only when the copy is accepted. It reports whether the copy was queued;
// otherwise it was dropped and counted.
func (m *Mirror) Submit(req *Request, primary *Outcome) bool {
	if m.closed.Load() || len(m.jobs) == cap(m.jobs) {
		m.rs.dropped.Inc()
		return false
	}
	m.start.Do(m.spawn)
	j := job{req: *req, primary: *primary}
	j.req.Body = bytes.Clone(req.Body)
	j.req.Ext = cloneExt(req.Ext)
	j.primary.Body = bytes.Clone(primary.Body)
	j.primary.Ext = cloneExt(primary.Ext)
	select {
	case m.jobs <- j:
		m.rs.requests.Inc()
		return true
	default:
		m.rs.dropped.Inc()
		return false
	}
}

func cloneExt(in []codec.Ext) []codec.Ext {
	if len(in) == 0 {
		return nil
	}
	n := 0
	for _, e := range in {
		n += len(e.Value)
	}
	buf := make([]byte, 0, n)
	out := make([]codec.Ext, len(in))
	for i, e := range in {
		buf = append(buf, e.Value...)
		out[i] = codec.Ext{Key: e.Key, Value: buf[len(buf)-len(e.Value) : len(buf) : len(buf)]}
	}
	return out
}

// Close stops the workers: queued copies are dropped (and counted), calls
// under way end by their timeout or ctx. It waits for the workers until
// ctx ends.
func (m *Mirror) Close(ctx context.Context) error {
	m.once.Do(func() {
		m.closed.Store(true)
		close(m.stop)
	})
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Mirror) work() {
	defer m.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-m.stop:
			for { // drain what is queued, counting it as dropped
				select {
				case <-m.jobs:
					m.rs.dropped.Inc()
				default:
					return
				}
			}
		case j := <-m.jobs:
			m.one(ctx, &j)
		}
	}
}

func (m *Mirror) one(parent context.Context, j *job) {
	ctx, cancel := context.WithTimeout(parent, m.timeout)
	start := time.Now()
	out := m.caller.Call(ctx, &j.req)
	lat := time.Since(start)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	if errors.Is(out.Err, ErrSkipped) {
		m.rs.dropped.Inc()
		return
	}
	m.rs.latency.Observe(lat.Seconds())
	kind := Compare(&j.primary, &out, m.ignore)
	if j.req.Oneway && out.Err == nil {
		kind = ""
	}
	if kind == KindError && timedOut {
		kind = KindTimeout
	}
	if kind == "" {
		m.rs.matched.Inc()
		return
	}
	m.rs.mismatched[kind].Inc()
	m.rs.record(kind, j, &out, lat)
	m.log.Debug("shadow mismatch", "kind", kind, "uin", j.req.UIN)
}

// Compare returns "" when shadow matches primary, else the mismatch kind.
// ignore lists application extension keys left out.
func Compare(primary, shadow *Outcome, ignore []uint16) string {
	switch {
	case shadow.Err != nil:
		if errors.Is(shadow.Err, context.DeadlineExceeded) {
			return KindTimeout
		}
		return KindError
	case primary.Result != shadow.Result:
		return KindResult
	case !bytes.Equal(primary.Body, shadow.Body):
		return KindBody
	case !sameExt(primary.Ext, shadow.Ext, ignore):
		return KindExt
	}
	return ""
}

func appExt(in []codec.Ext, ignore []uint16) []codec.Ext {
	var out []codec.Ext
	for _, e := range in {
		if e.Key >= codec.ExtAppMin && !slices.Contains(ignore, e.Key) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b codec.Ext) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

func sameExt(a, b []codec.Ext, ignore []uint16) bool {
	x, y := appExt(a, ignore), appExt(b, ignore)
	return slices.EqualFunc(x, y, func(p, q codec.Ext) bool { return p.Key == q.Key && bytes.Equal(p.Value, q.Value) })
}

// Metrics are the shadow collectors and the per-route mismatch logs; they
// live for the process, so counts and logs survive reloads.
type Metrics struct {
	requests   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	matched    *prometheus.CounterVec
	mismatched *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	now        func() time.Time

	mu     sync.Mutex
	routes map[string]*routeStats
}

// NewMetrics creates the collectors, registered on reg when non-nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "meshgate", Subsystem: "shadow", Name: "requests_total",
			Help: "Requests copied to a route's shadow backend."}, []string{"route"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "meshgate", Subsystem: "shadow", Name: "dropped_total",
			Help: "Shadow copies dropped because the shadow queue was full or the mirror closed."}, []string{"route"}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "meshgate", Subsystem: "shadow", Name: "matched_total",
			Help: "Shadow replies equal to the primary's."}, []string{"route"}),
		mismatched: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "meshgate", Subsystem: "shadow", Name: "mismatched_total",
			Help: "Shadow replies that differ from the primary's, by kind (result, body, ext, error, timeout)."}, []string{"route", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "meshgate", Subsystem: "shadow", Name: "duration_seconds",
			Help:    "Shadow call latency.",
			Buckets: []float64{100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5}}, []string{"route"}),
		now:    time.Now,
		routes: map[string]*routeStats{},
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.dropped, m.matched, m.mismatched, m.latency)
	}
	return m
}

type routeStats struct {
	route      string
	requests   prometheus.Counter
	dropped    prometheus.Counter
	matched    prometheus.Counter
	mismatched map[string]prometheus.Counter
	latency    prometheus.Observer
	now        func() time.Time

	mu   sync.Mutex
	cfg  config.ShadowDiffs
	ring []Diff
	next int
	seen uint64 // mismatches seen, for sampling
}

func (m *Metrics) route(route string, d config.ShadowDiffs) *routeStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.routes[route]
	if rs == nil {
		rs = &routeStats{route: route, requests: m.requests.WithLabelValues(route), dropped: m.dropped.WithLabelValues(route),
			matched: m.matched.WithLabelValues(route), mismatched: map[string]prometheus.Counter{},
			latency: m.latency.WithLabelValues(route), now: m.now}
		for _, k := range kinds {
			rs.mismatched[k] = m.mismatched.WithLabelValues(route, k)
		}
		m.routes[route] = rs
	}
	rs.configure(d)
	return rs
}

func (rs *routeStats) configure(d config.ShadowDiffs) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	d.Keep, d.Sample = max(d.Keep, 1), max(d.Sample, 1)
	if d.MaxBody <= 0 {
		d.MaxBody = config.DefaultShadowDiffsMaxBody
	}
	if d.Keep != rs.cfg.Keep { // keep the newest entries that still fit
		old := rs.ordered()
		if len(old) > d.Keep {
			old = old[len(old)-d.Keep:]
		}
		rs.ring, rs.next = make([]Diff, 0, d.Keep), 0
		rs.ring = append(rs.ring, old...)
		rs.next = len(rs.ring) % d.Keep
	}
	rs.cfg = d
}

// ordered returns the ring oldest first.
func (rs *routeStats) ordered() []Diff {
	if len(rs.ring) < cap(rs.ring) || rs.next == 0 {
		return slices.Clone(rs.ring)
	}
	return append(slices.Clone(rs.ring[rs.next:]), rs.ring[:rs.next]...)
}

// Side is one reply as shown in a Diff.
type Side struct {
	Result  uint16 `json:"result"`
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	BodyLen int    `json:"body_len"`
	// BodySHA256 is the first 8 bytes of the body's SHA-256, hex.
	BodySHA256 string `json:"body_sha256"`
	// Body is shown (up to diffs.max_body bytes) only with diffs.show_bodies.
	Body []byte   `json:"body,omitempty"`
	Ext  []uint16 `json:"ext_keys,omitempty"`
}

// Diff is one recorded mismatch.
type Diff struct {
	Time    time.Time `json:"time"`
	Route   string    `json:"route"`
	Kind    string    `json:"kind"`
	UIN     uint64    `json:"uin"`
	Caller  string    `json:"caller,omitempty"`
	Method  string    `json:"method,omitempty"`
	Cmd     uint32    `json:"cmd,omitempty"`
	Latency float64   `json:"shadow_latency_seconds"`
	Primary Side      `json:"primary"`
	Shadow  Side      `json:"shadow"`
}

func side(o *Outcome, show bool, maxBody int) Side {
	sum := sha256.Sum256(o.Body)
	s := Side{Result: o.Result, Message: o.Message, BodyLen: len(o.Body), BodySHA256: hex.EncodeToString(sum[:8])}
	code, _ := codec.GRPCCode(o.Result)
	s.Code = codes.Code(code).String()
	if o.Err != nil {
		s.Error, s.Code = o.Err.Error(), ""
	}
	if show {
		s.Body = bytes.Clone(o.Body[:min(len(o.Body), maxBody)])
	}
	for _, e := range o.Ext {
		if e.Key >= codec.ExtAppMin {
			s.Ext = append(s.Ext, e.Key)
		}
	}
	return s
}

func (rs *routeStats) record(kind string, j *job, out *Outcome, lat time.Duration) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.seen++
	if (rs.seen-1)%uint64(rs.cfg.Sample) != 0 {
		return
	}
	d := Diff{Time: rs.now().UTC(), Route: rs.route, Kind: kind, UIN: j.req.UIN, Caller: j.req.Caller,
		Method: j.req.Method, Cmd: j.req.Cmd, Latency: lat.Seconds(),
		Primary: side(&j.primary, rs.cfg.ShowBodies, rs.cfg.MaxBody),
		Shadow:  side(out, rs.cfg.ShowBodies, rs.cfg.MaxBody)}
	if len(rs.ring) < rs.cfg.Keep {
		rs.ring = append(rs.ring, d)
		rs.next = len(rs.ring) % rs.cfg.Keep
		return
	}
	rs.ring[rs.next] = d
	rs.next = (rs.next + 1) % rs.cfg.Keep
}

// Diffs returns the kept mismatches of route ("" = every route), newest
// first, at most limit (≤ 0 = all).
func (m *Metrics) Diffs(route string, limit int) []Diff {
	m.mu.Lock()
	rss := make([]*routeStats, 0, len(m.routes))
	for r, rs := range m.routes {
		if route == "" || r == route {
			rss = append(rss, rs)
		}
	}
	m.mu.Unlock()
	var out []Diff
	for _, rs := range rss {
		rs.mu.Lock()
		out = append(out, rs.ordered()...)
		rs.mu.Unlock()
	}
	slices.SortStableFunc(out, func(a, b Diff) int { return b.Time.Compare(a.Time) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Counts are a route's shadow totals (for /migrate/status), read from the
// exported counters.
type Counts struct {
	Requests   uint64            `json:"requests"`
	Dropped    uint64            `json:"dropped"`
	Matched    uint64            `json:"matched"`
	Mismatched map[string]uint64 `json:"mismatched"`
}

// Counts returns route's totals; false when the route never had a shadow.
func (m *Metrics) Counts(route string) (Counts, bool) {
	m.mu.Lock()
	rs := m.routes[route]
	m.mu.Unlock()
	if rs == nil {
		return Counts{}, false
	}
	c := Counts{Requests: value(rs.requests), Dropped: value(rs.dropped), Matched: value(rs.matched), Mismatched: map[string]uint64{}}
	for k, ctr := range rs.mismatched {
		c.Mismatched[k] = value(ctr)
	}
	return c, true
}

func value(c prometheus.Counter) uint64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}

// FromFrame is the outcome of a private reply frame. Body and extension
// values alias f (Submit copies them).
func FromFrame(f *codec.Frame) Outcome {
	o := Outcome{Result: f.Result, Body: f.Body, Ext: f.Ext}
	for _, e := range f.Ext {
		if e.Key == codec.ExtErrorMsg {
			o.Message = string(e.Value)
		}
	}
	return o
}

// FromGRPC is the outcome of a unary gRPC call (reply body, status error,
// header and trailer metadata), mapped exactly as a private listener maps
// it to a reply frame (mapping.ReplyFrame): the result through the one
// table, application extensions from x-mgp-ext-<key>-bin metadata.
func FromGRPC(body []byte, err error, header, trailer metadata.MD) Outcome {
	var f codec.Frame
	mapping.ReplyFrame(&f, body, err, header, trailer)
	return FromFrame(&f)
}
