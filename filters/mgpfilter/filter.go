// Command mgpfilter is MeshGate's MGP/1-aware Envoy network filter, built
// with the proxy-wasm Go SDK for GOOS=wasip1:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o mgp_filter.wasm ./mgpfilter
//
// It reassembles MGP/1 frames across arbitrary TCP chunks in both directions
// with the codec/mgp package (no second parser) and
//
//   - records per-command stats in Envoy: requests, responses by result
//     code, request→response latency matched by seq, denied and malformed
//     frames (see stats.go for names);
//   - enforces a command allow/deny list: a denied request is not
//     forwarded and is answered with a response frame carrying result 4
//     (forbidden);
//   - closes a connection that sends a malformed frame (or, configured with
//     on_malformed "pass", stops parsing it), leaving others untouched.
//
// # How a denied request is answered
//
// proxy-wasm gives a network filter no call to write to the downstream
// connection outside an upstream-data callback. So the filter replaces the
// denied request, in the bytes it forwards, by an MGP heartbeat with the
// same seq; every MGP/1 peer answers a heartbeat with a response heartbeat
// of that seq, and the filter rewrites that answer into the result-4
// response the client expects. The request body never leaves Envoy.
//
// # Buffers
//
// Without an allow/deny list the filter only observes: Envoy's buffers are
// never rewritten and the filter keeps a private copy of at most one
// incomplete frame per direction. With a list it holds back an incomplete
// frame until it is whole (so a denied frame split across reads is never
// partly forwarded) and replaces Envoy's buffer with the frames that pass.
// Per-connection buffers and the decoded Frame are reused: steady state
// allocates nothing per frame beyond what the SDK allocates to copy a chunk
// out of the host.
package main

import (
	"errors"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// maxTracked bounds the per-connection seq→request map used for latency.
const maxTracked = 4096

// denyMessage is carried in ext 5 of a deny response.
var denyMessage = []byte("forbidden by MeshGate MGP filter")

// ops are the host calls that change a connection. The SDK implements them
// (sdk.go); the proxytest emulator does not implement buffer replacement or
// closing for network filters, so unit tests record them instead.
type ops interface {
	Replace(downstream bool, data []byte) error
	Close() error
}

// clock returns unix nanos; tests replace it.
var clock = defaultClock

func defaultClock() int64 { return time.Now().UnixNano() }

// request is an in-flight request awaiting its response.
type request struct {
	cmd   uint32
	start int64 // unix nanos
}

// denied is a refused request awaiting the heartbeat answer to rewrite.
type denied struct {
	cmd uint32
	uin uint64
}

// stream reassembles one direction.
type stream struct {
	pending []byte // incomplete frame bytes (own copy)
	out     []byte // rewritten output, reused
	frame   codec.Frame
}

// conn is the per-connection filter state.
type conn struct {
	cfg      *Config
	codec    *mgp.Codec
	stats    *stats
	ops      ops
	down, up stream
	inflight map[uint32]request
	denied   map[uint32]denied
	// passthrough is set after a malformed frame with on_malformed "pass".
	passthrough bool
	closed      bool
	scratch     codec.Frame
}

func newConn(cfg *Config, c *mgp.Codec, st *stats, o ops) *conn {
	return &conn{
		cfg: cfg, codec: c, stats: st, ops: o,
		inflight: make(map[uint32]request),
		denied:   make(map[uint32]denied),
	}
}

// onData processes a chunk of one direction. It returns whether Envoy's
// buffer must be replaced by out.
func (c *conn) onData(downstream bool, data []byte, eos bool) (out []byte, replace bool) {
	if c.passthrough || c.closed {
		return nil, false
	}
	s := &c.up
	if downstream {
		s = &c.down
	}
	rewrite := c.cfg.policy()
	buf := data
	held := len(s.pending) > 0
	if held {
		s.pending = append(s.pending, data...)
		buf = s.pending
	}
	s.out = s.out[:0]
	changed := held && rewrite
	off := 0
	for off < len(buf) {
		n, _, err := c.codec.Decode(buf[off:], &s.frame)
		if err != nil {
			return c.malformed(s, buf[off:], rewrite, err)
		}
		if n == 0 {
			break
		}
		keep := true
		if downstream {
			keep = c.onRequest(&s.frame, s)
		} else {
			keep = c.onResponse(&s.frame, s)
		}
		if rewrite && keep {
			s.out = append(s.out, buf[off:off+n]...)
		}
		changed = changed || !keep
		off += n
	}
	tail := buf[off:]
	if eos && rewrite {
		// The stream ends mid-frame: pass what is left, as a plain proxy would.
		s.out = append(s.out, tail...)
		tail = tail[:0]
	}
	if len(tail) > 0 && rewrite {
		changed = true
	}
	if held {
		s.pending = s.pending[:copy(s.pending, tail)]
	} else {
		s.pending = append(s.pending[:0], tail...)
	}
	if !rewrite || !changed {
		return nil, false
	}
	return s.out, true
}

// malformed handles a decode error at the front of rest.
func (c *conn) malformed(s *stream, rest []byte, rewrite bool, err error) ([]byte, bool) {
	c.stats.malformed.Increment(1)
	s.pending = s.pending[:0]
	if c.cfg.OnMalformed == OnMalformedPass {
		logWarn("mgp filter: malformed frame, passing the connection through unparsed: " + err.Error())
		c.passthrough = true
		if rewrite {
			s.out = append(s.out, rest...)
			return s.out, true
		}
		return nil, false
	}
	logWarn("mgp filter: malformed frame, closing the connection: " + err.Error())
	c.closed = true
	if cerr := c.ops.Close(); cerr != nil && !errors.Is(cerr, errNotSupported) {
		logWarn("mgp filter: close failed: " + cerr.Error())
	}
	// Frames before the bad one still go out; the bad bytes never do.
	if rewrite {
		return s.out, true
	}
	return nil, false
}

// onRequest observes a downstream frame; false means it was consumed (and
// possibly replaced in s.out).
func (c *conn) onRequest(f *codec.Frame, s *stream) bool {
	if !f.IsRequest() {
		return true
	}
	cs := c.stats.cmd(f.Cmd)
	cs.requests.Increment(1)
	if !c.cfg.Allowed(f.Cmd) {
		cs.denied.Increment(1)
		c.stats.denied.Increment(1)
		if f.Flags.Has(codec.FlagOneway) {
			return false
		}
		if _, dup := c.denied[f.Seq]; !dup && len(c.denied) >= maxTracked {
			// Upstream is not answering the probes: drop unanswered
			// rather than grow without bound.
			return false
		}
		c.denied[f.Seq] = denied{cmd: f.Cmd, uin: f.UIN}
		probe := &c.scratch
		probe.Reset()
		probe.Seq, probe.UIN, probe.Flags = f.Seq, f.UIN, codec.FlagHeartbeat
		s.out, _ = c.codec.Append(s.out, probe)
		return false
	}
	if !f.Flags.Has(codec.FlagOneway) && len(c.inflight) < maxTracked {
		c.inflight[f.Seq] = request{cmd: f.Cmd, start: clock()}
	}
	return true
}

// onResponse observes an upstream frame; false means it was replaced.
func (c *conn) onResponse(f *codec.Frame, s *stream) bool {
	if !f.Flags.Has(codec.FlagResponse) {
		return true
	}
	if f.Flags.Has(codec.FlagHeartbeat) {
		d, ok := c.denied[f.Seq]
		if !ok {
			return true
		}
		delete(c.denied, f.Seq)
		resp := &c.scratch
		resp.Reset()
		resp.Cmd, resp.Seq, resp.UIN = d.cmd, f.Seq, d.uin
		resp.Flags, resp.Result = codec.FlagResponse, codec.ResultForbidden
		resp.Ext = append(resp.Ext, codec.Ext{Key: codec.ExtErrorMsg, Value: denyMessage})
		s.out, _ = c.codec.Append(s.out, resp)
		c.stats.result(d.cmd, codec.ResultForbidden).Increment(1)
		return false
	}
	c.stats.result(f.Cmd, f.Result).Increment(1)
	if r, ok := c.inflight[f.Seq]; ok {
		delete(c.inflight, f.Seq)
		if d := clock() - r.start; d >= 0 {
			c.stats.cmd(r.cmd).latency.Record(uint64(d / 1000))
		}
	} else {
		c.stats.unmatched.Increment(1)
	}
	return true
}
