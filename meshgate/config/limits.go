package config

import (
	"fmt"
	"time"
)

// Default resource limits (see docs/security-limits.md).
const (
	DefaultMaxConnections        = 10000
	DefaultFDReserve             = 128
	DefaultMaxConcurrentStreams  = 100
	DefaultRecvTimeout           = 10 * time.Second
	DefaultSendTimeout           = 10 * time.Second
	DefaultMaxConnectionIdle     = 5 * time.Minute
	DefaultMaxConnectionAge      = 30 * time.Minute
	DefaultMaxConnectionAgeGrace = 30 * time.Second
	DefaultKeepaliveTime         = 2 * time.Minute
	DefaultKeepaliveTimeout      = 20 * time.Second
	DefaultKeepaliveMinTime      = 10 * time.Second
	DefaultStreamWindow          = 64 << 10
	DefaultConnWindow            = 1 << 20
	DefaultMaxMessageSize        = 4 << 20
	DefaultMaxHeaderListSize     = 64 << 10
)

// Limits bound what one client can take from a listener. Set under
// defaults.limits (every listener) and per listener under
// listeners[i].limits; a listener's non-zero fields override the defaults.
// Fields marked "grpc" apply to grpc listeners only; max_connections and
// send_timeout apply to both kinds; fd_reserve only under defaults.limits.
type Limits struct {
	// MaxConnections caps the listener's open downstream connections; a
	// connection past the cap is closed at once and counted in
	// meshgate_connections_rejected_total{reason="max_connections"}.
	MaxConnections int `yaml:"max_connections,omitempty" json:"max_connections,omitempty"`
	// FDReserve is how many file descriptors (below RLIMIT_NOFILE) are
	// kept for admin, /healthz, gRPC listeners and upstream connections: a
	// private connection that would use one of them is refused
	// (reason="fd_reserve"). Process-wide: defaults.limits only.
	FDReserve int `yaml:"fd_reserve,omitempty" json:"fd_reserve,omitempty"`

	// MaxConcurrentStreams is advertised in SETTINGS (grpc).
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams,omitempty" json:"max_concurrent_streams,omitempty"`
	// MaxInFlightPerConnection caps the calls one connection has at the
	// upstream at once; further calls on that connection fail with
	// RESOURCE_EXHAUSTED (grpc). Default: max_concurrent_streams.
	MaxInFlightPerConnection int `yaml:"max_in_flight_per_connection,omitempty" json:"max_in_flight_per_connection,omitempty"`
	// RecvTimeout bounds how long a call may take to deliver its request
	// message after its headers (grpc); past it the call ends with
	// DEADLINE_EXCEEDED.
	RecvTimeout time.Duration `yaml:"recv_timeout,omitempty" json:"recv_timeout,omitempty"`
	// SendTimeout bounds one socket write to a client (both kinds): a
	// client that stops reading its socket is disconnected and its buffers
	// released.
	SendTimeout time.Duration `yaml:"send_timeout,omitempty" json:"send_timeout,omitempty"`
	// MaxConnectionIdle closes (GOAWAY) a connection without calls for
	// this long (grpc).
	MaxConnectionIdle time.Duration `yaml:"max_connection_idle,omitempty" json:"max_connection_idle,omitempty"`
	// MaxConnectionAge sends GOAWAY to a connection this old (grpc); after
	// MaxConnectionAgeGrace more it is closed hard, releasing everything it
	// still holds (e.g. replies a client never reads).
	MaxConnectionAge      time.Duration `yaml:"max_connection_age,omitempty" json:"max_connection_age,omitempty"`
	MaxConnectionAgeGrace time.Duration `yaml:"max_connection_age_grace,omitempty" json:"max_connection_age_grace,omitempty"`
	// KeepaliveTime/KeepaliveTimeout: the server pings a quiet connection
	// after KeepaliveTime and closes it if the ping is not answered within
	// KeepaliveTimeout (grpc).
	KeepaliveTime    time.Duration `yaml:"keepalive_time,omitempty" json:"keepalive_time,omitempty"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout,omitempty" json:"keepalive_timeout,omitempty"`
	// KeepaliveMinTime is the shortest client ping interval tolerated; a
	// client pinging faster (or pinging without calls) gets GOAWAY (grpc).
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time,omitempty" json:"keepalive_min_time,omitempty"`
	// StreamWindow and ConnWindow are the HTTP/2 receive windows (bytes)
	// MeshGate grants per stream and per connection: what one client can
	// make it buffer (grpc). Minimum 65535.
	StreamWindow int32 `yaml:"stream_window,omitempty" json:"stream_window,omitempty"`
	ConnWindow   int32 `yaml:"conn_window,omitempty" json:"conn_window,omitempty"`
	// MaxRecvMessageSize and MaxSendMessageSize cap one message (grpc).
	MaxRecvMessageSize int `yaml:"max_recv_message_size,omitempty" json:"max_recv_message_size,omitempty"`
	MaxSendMessageSize int `yaml:"max_send_message_size,omitempty" json:"max_send_message_size,omitempty"`
	// MaxHeaderListSize caps a call's request headers (metadata), bytes
	// (grpc); a call over it is refused by the HTTP/2 layer.
	MaxHeaderListSize int `yaml:"max_header_list_size,omitempty" json:"max_header_list_size,omitempty"`
}

// DefaultLimits are the built-in values behind defaults.limits.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:        DefaultMaxConnections,
		FDReserve:             DefaultFDReserve,
		MaxConcurrentStreams:  DefaultMaxConcurrentStreams,
		RecvTimeout:           DefaultRecvTimeout,
		SendTimeout:           DefaultSendTimeout,
		MaxConnectionIdle:     DefaultMaxConnectionIdle,
		MaxConnectionAge:      DefaultMaxConnectionAge,
		MaxConnectionAgeGrace: DefaultMaxConnectionAgeGrace,
		KeepaliveTime:         DefaultKeepaliveTime,
		KeepaliveTimeout:      DefaultKeepaliveTimeout,
		KeepaliveMinTime:      DefaultKeepaliveMinTime,
		StreamWindow:          DefaultStreamWindow,
		ConnWindow:            DefaultConnWindow,
		MaxRecvMessageSize:    DefaultMaxMessageSize,
		MaxSendMessageSize:    DefaultMaxMessageSize,
		MaxHeaderListSize:     DefaultMaxHeaderListSize,
	}
}

// Effective returns l with its zero fields filled from the built-in
// defaults (a nil l gives the defaults); for listeners built without
// ApplyDefaults (tests, programmatic use).
func (l *Limits) Effective() Limits {
	var out Limits
	if l != nil {
		out = *l
	}
	b := DefaultLimits()
	out.fill(&b)
	return out
}

// fill sets l's zero fields from d.
func (l *Limits) fill(d *Limits) {
	setDefault(&l.MaxConnections, d.MaxConnections)
	setDefault(&l.FDReserve, d.FDReserve)
	setDefault(&l.MaxConcurrentStreams, d.MaxConcurrentStreams)
	setDefault(&l.MaxInFlightPerConnection, d.MaxInFlightPerConnection)
	setDefault(&l.RecvTimeout, d.RecvTimeout)
	setDefault(&l.SendTimeout, d.SendTimeout)
	setDefault(&l.MaxConnectionIdle, d.MaxConnectionIdle)
	setDefault(&l.MaxConnectionAge, d.MaxConnectionAge)
	setDefault(&l.MaxConnectionAgeGrace, d.MaxConnectionAgeGrace)
	setDefault(&l.KeepaliveTime, d.KeepaliveTime)
	setDefault(&l.KeepaliveTimeout, d.KeepaliveTimeout)
	setDefault(&l.KeepaliveMinTime, d.KeepaliveMinTime)
	setDefault(&l.StreamWindow, d.StreamWindow)
	setDefault(&l.ConnWindow, d.ConnWindow)
	setDefault(&l.MaxRecvMessageSize, d.MaxRecvMessageSize)
	setDefault(&l.MaxSendMessageSize, d.MaxSendMessageSize)
	setDefault(&l.MaxHeaderListSize, d.MaxHeaderListSize)
	setDefault(&l.MaxInFlightPerConnection, int(l.MaxConcurrentStreams))
}

// applyLimitDefaults completes defaults.limits from the built-in values
// and every listener's limits from defaults.limits.
func (c *Config) applyLimitDefaults() {
	b := DefaultLimits()
	d := &c.Defaults.Limits
	userInFlight := d.MaxInFlightPerConnection
	d.fill(&b)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Limits == nil {
			l.Limits = &Limits{}
		}
		fd := l.Limits.FDReserve
		dd := *d
		if userInFlight == 0 {
			dd.MaxInFlightPerConnection = 0 // follow this listener's streams
		}
		l.Limits.fill(&dd)
		l.Limits.FDReserve = fd // process-wide: only defaults.limits counts
	}
}

// validateLimits checks defaults.limits and every listener's limits.
func (c *Config) validateLimits(e *errs) {
	c.Defaults.Limits.validate(e, "defaults.limits")
	checkRange(e, "defaults.limits.fd_reserve", c.Defaults.Limits.FDReserve, 0, 1<<16)
	for i := range c.Listeners {
		l := c.Listeners[i].Limits
		if l == nil {
			continue
		}
		f := fmt.Sprintf("listeners[%d].limits", i)
		l.validate(e, f)
		if l.FDReserve != 0 {
			e.add(f+".fd_reserve", "process-wide: set it under defaults.limits")
		}
	}
}

func (l *Limits) validate(e *errs, f string) {
	checkNotNegative(e, f+".max_connections", l.MaxConnections)
	checkRange(e, f+".max_concurrent_streams", l.MaxConcurrentStreams, 0, 1<<20) // 0: the default
	checkNotNegative(e, f+".max_in_flight_per_connection", l.MaxInFlightPerConnection)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"recv_timeout", l.RecvTimeout}, {"send_timeout", l.SendTimeout},
		{"max_connection_idle", l.MaxConnectionIdle}, {"max_connection_age", l.MaxConnectionAge},
		{"max_connection_age_grace", l.MaxConnectionAgeGrace}, {"keepalive_time", l.KeepaliveTime},
		{"keepalive_timeout", l.KeepaliveTimeout}, {"keepalive_min_time", l.KeepaliveMinTime},
	} {
		checkNotNegative(e, f+"."+d.name, d.v)
	}
	if l.StreamWindow != 0 {
		checkMin(e, f+".stream_window", l.StreamWindow, 65535)
	}
	if l.ConnWindow != 0 {
		checkMin(e, f+".conn_window", l.ConnWindow, 65535)
	}
	checkRange(e, f+".max_recv_message_size", l.MaxRecvMessageSize, 0, 64<<20)
	checkRange(e, f+".max_send_message_size", l.MaxSendMessageSize, 0, 64<<20)
	if l.MaxHeaderListSize != 0 {
		checkRange(e, f+".max_header_list_size", l.MaxHeaderListSize, 1024, 16<<20)
	}
}
