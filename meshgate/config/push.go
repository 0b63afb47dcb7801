package config

import (
	"fmt"
	"net"
	"time"
)

// Push and stream defaults (docs/push-streams.md).
const (
	// DefaultPushQueueBytes bounds the bytes waiting to be written on one
	// downstream connection before a push to it is refused
	// (RESOURCE_EXHAUSTED).
	DefaultPushQueueBytes = 256 << 10
	// DefaultMaxConnsPerUIN bounds how many connections one uin is bound to
	// (multi-device); binding one more unbinds the oldest.
	DefaultMaxConnsPerUIN = 8
	// DefaultMaxUINsPerConn bounds how many uins one connection is bound to
	// when uins are learned from requests; further uins are not learned.
	DefaultMaxUINsPerConn = 4
	// DefaultPushMaxConcurrency bounds upstream pushes forwarded to a gRPC
	// method at once; more are dropped and counted.
	DefaultPushMaxConcurrency = 64
	// DefaultStreamBuffer bounds the messages buffered for one stream
	// exchange; past it the exchange ends with result 6.
	DefaultStreamBuffer = 64
)

// Where an upstream's PUSH frames go.
const (
	PushToDownstream = "downstream" // the downstream connection(s) of the frame's uin
	PushToGRPC       = "grpc"       // a unary gRPC call, fire-and-forget
)

// Stream kinds of a route (docs/protocol.md "Push and streams").
const (
	StreamUnary  = "" // one request, one reply (also "unary")
	StreamServer = "server"
	StreamClient = "client"
	StreamBidi   = "bidi"
)

// ListenerPush is listeners[].push.
//
// On a private listener it makes the listener remember which connection
// carries which uin so pushes can reach it. On a grpc listener, API: true
// serves the push API (meshgate.v1.Push) beside the routes, under the
// listener's TLS and authz.
type ListenerPush struct {
	// LoginCmd (private), when set, binds a uin to a connection only when
	// a request with this cmd gets a reply with result 0; otherwise the
	// uin of every request binds.
	LoginCmd uint32 `yaml:"login_cmd,omitempty" json:"login_cmd,omitempty"`
	// QueueBytes (private) bounds bytes queued for writing on one
	// connection; a push beyond it is refused. Default 256 KiB.
	QueueBytes int `yaml:"queue_bytes,omitempty" json:"queue_bytes,omitempty"`
	// MaxConnsPerUIN (private) bounds connections per uin; default 8.
	MaxConnsPerUIN int `yaml:"max_conns_per_uin,omitempty" json:"max_conns_per_uin,omitempty"`
	// MaxUINsPerConn (private) bounds uins per connection; default 4.
	MaxUINsPerConn int `yaml:"max_uins_per_conn,omitempty" json:"max_uins_per_conn,omitempty"`
	// TrustUIN (private) binds the uin of every request on a listener
	// without auth and without login_cmd. A client can then claim any uin
	// and receive that user's pushes, so it must be asked for.
	TrustUIN bool `yaml:"trust_uin,omitempty" json:"trust_uin,omitempty"`
	// API (grpc) serves meshgate.v1.Push on this listener.
	API bool `yaml:"api,omitempty" json:"api,omitempty"`
}

// UpstreamPush is upstreams[].push: what to do with PUSH frames a private
// upstream sends on its pooled connections.
type UpstreamPush struct {
	// To is downstream (deliver to the uin's downstream connections) or
	// grpc (call Method on Upstream, fire-and-forget).
	To string `yaml:"to" json:"to"`
	// Method is the gRPC method called with the push body (to: grpc).
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Upstream is the grpc upstream Method is called on (to: grpc).
	Upstream string `yaml:"upstream,omitempty" json:"upstream,omitempty"`
	// MaxConcurrency bounds calls in flight (to: grpc); default 64.
	MaxConcurrency int `yaml:"max_concurrency,omitempty" json:"max_concurrency,omitempty"`
	// Timeout bounds one call (to: grpc); default defaults.timeout.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// applyPushDefaults fills the push sections' zero values.
func (c *Config) applyPushDefaults() {
	for i := range c.Listeners {
		p := c.Listeners[i].Push
		if p == nil || c.Listeners[i].Kind != KindPrivate {
			continue
		}
		setDefault(&p.QueueBytes, DefaultPushQueueBytes)
		setDefault(&p.MaxConnsPerUIN, DefaultMaxConnsPerUIN)
		setDefault(&p.MaxUINsPerConn, DefaultMaxUINsPerConn)
	}
	for i := range c.Upstreams {
		p := c.Upstreams[i].Push
		if p == nil {
			continue
		}
		if p.To == PushToGRPC && p.MaxConcurrency == 0 {
			p.MaxConcurrency = DefaultPushMaxConcurrency
		}
		if p.To == PushToGRPC && p.Timeout == 0 {
			p.Timeout = c.Defaults.Timeout
		}
	}
}

// validatePush checks listeners[].push, upstreams[].push and
// listeners[].routes[].stream.
func (c *Config) validatePush(e *errs) {
	pushListeners := 0
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		for j, r := range l.Routes {
			if r.Stream != StreamUnary { // StreamUnary is "" (unset)
				checkOneOf(e, fmt.Sprintf("%s.routes[%d].stream", f, j), r.Stream, "unary", StreamServer, StreamClient, StreamBidi)
			}
			if r.IsStream() && r.Oneway {
				e.add(fmt.Sprintf("%s.routes[%d].oneway", f, j), "a stream route cannot be oneway")
			}
			if r.IsStream() && r.Body != nil && r.Body.Format != "" && r.Body.Format != BodyProto {
				e.add(fmt.Sprintf("%s.routes[%d].body", f, j), "body transcoding applies to unary routes only")
			}
		}
		p := l.Push
		if p == nil {
			continue
		}
		pf := f + ".push"
		switch l.Kind {
		case KindPrivate:
			pushListeners++
			if p.API {
				e.add(pf+".api", "only a grpc listener serves the push API")
			}
			checkRange(e, pf+".queue_bytes", p.QueueBytes, 1024, 64<<20)
			checkRange(e, pf+".max_conns_per_uin", p.MaxConnsPerUIN, 1, 1024)
			checkRange(e, pf+".max_uins_per_conn", p.MaxUINsPerConn, 1, 1024)
			if p.LoginCmd == 0 && l.Auth == nil && !p.TrustUIN {
				e.add(pf+".login_cmd", "required when the listener has no auth: otherwise any client could claim any uin and receive its pushes (set trust_uin: true to accept that)")
			}
		case KindGRPC:
			if !p.API {
				e.add(pf+".api", "a grpc listener's push section must set api: true")
			}
			// Whoever reaches the push API can write to any user's
			// connection: beyond loopback it needs verified callers.
			if host, _, err := net.SplitHostPort(l.Address); p.API && err == nil && !isLoopback(host) && (l.TLS == nil || l.TLS.CAFile == "" || l.Authz == nil) {
				e.add(pf+".api", "the push API on a non-loopback address needs mTLS (tls.ca_file) and an authz policy naming who may push; serve it on 127.0.0.1 otherwise")
			}
			if p.LoginCmd != 0 || p.QueueBytes != 0 || p.MaxConnsPerUIN != 0 || p.MaxUINsPerConn != 0 || p.TrustUIN {
				e.add(pf, "login_cmd, queue_bytes, max_conns_per_uin, max_uins_per_conn and trust_uin apply to private listeners only")
			}
		}
	}
	ups := c.upstreamsByName()
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		p := u.Push
		if p == nil {
			continue
		}
		pf := fmt.Sprintf("upstreams[%d].push", i)
		if u.Protocol != ProtoPrivate {
			e.add(pf, "only a private upstream sends PUSH frames")
		}
		switch p.To {
		case PushToDownstream:
			if pushListeners == 0 {
				e.add(pf+".to", "downstream needs a private listener with a push section")
			}
			if p.Method != "" || p.Upstream != "" {
				e.add(pf+".method", "method and upstream apply to to: grpc only")
			}
		case PushToGRPC:
			if err := CheckMethod(p.Method, false); err != nil {
				e.add(pf+".method", "%v", err)
			}
			if t := checkUpstreamRef(e, pf+".upstream", p.Upstream, ups); t != nil && t.Protocol != ProtoGRPC {
				e.add(pf+".upstream", "upstream %q speaks %s; to: grpc needs a grpc upstream", p.Upstream, t.Protocol)
			}
			checkRange(e, pf+".max_concurrency", p.MaxConcurrency, 1, 65536)
			checkNotNegative(e, pf+".timeout", p.Timeout)
		default:
			e.add(pf+".to", "must be %q or %q, got %q", PushToDownstream, PushToGRPC, p.To)
		}
	}
}

// IsStream reports whether the route is a stream (server, client or bidi).
func (r *Route) IsStream() bool { return r.StreamMode() != StreamUnary }

// StreamMode is routes[].stream normalised: "unary" is StreamUnary ("").
func (r *Route) StreamMode() string {
	if r.Stream == "unary" {
		return StreamUnary
	}
	return r.Stream
}
