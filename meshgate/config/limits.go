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
	setInt(&l.MaxConnections, d.MaxConnections)
	setInt(&l.FDReserve, d.FDReserve)
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	setInt(&l.MaxInFlightPerConnection, d.MaxInFlightPerConnection)
	setDur(&l.RecvTimeout, d.RecvTimeout)
	setDur(&l.SendTimeout, d.SendTimeout)
	setDur(&l.MaxConnectionIdle, d.MaxConnectionIdle)
	setDur(&l.MaxConnectionAge, d.MaxConnectionAge)
	setDur(&l.MaxConnectionAgeGrace, d.MaxConnectionAgeGrace)
	setDur(&l.KeepaliveTime, d.KeepaliveTime)
	setDur(&l.KeepaliveTimeout, d.KeepaliveTimeout)
	setDur(&l.KeepaliveMinTime, d.KeepaliveMinTime)
	if l.StreamWindow == 0 {
		l.StreamWindow = d.StreamWindow
	}
	if l.ConnWindow == 0 {
		l.ConnWindow = d.ConnWindow
	}
	setInt(&l.MaxRecvMessageSize, d.MaxRecvMessageSize)
	setInt(&l.MaxSendMessageSize, d.MaxSendMessageSize)
	setInt(&l.MaxHeaderListSize, d.MaxHeaderListSize)
	if l.MaxInFlightPerConnection == 0 {
		l.MaxInFlightPerConnection = int(l.MaxConcurrentStreams)
	}
}

func setInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func setDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
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
	if r := c.Defaults.Limits.FDReserve; r < 0 || r > 1<<16 {
		e.add("defaults.limits.fd_reserve", "must be in [0, 65536], got %d", r)
	}
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
	if l.MaxConnections < 0 {
		e.add(f+".max_connections", "must not be negative, got %d", l.MaxConnections)
	}
	if l.MaxConcurrentStreams > 1<<20 {
		e.add(f+".max_concurrent_streams", "must be in [1, 1048576], got %d", l.MaxConcurrentStreams)
	}
	if l.MaxInFlightPerConnection < 0 {
		e.add(f+".max_in_flight_per_connection", "must not be negative, got %d", l.MaxInFlightPerConnection)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"recv_timeout", l.RecvTimeout}, {"send_timeout", l.SendTimeout},
		{"max_connection_idle", l.MaxConnectionIdle}, {"max_connection_age", l.MaxConnectionAge},
		{"max_connection_age_grace", l.MaxConnectionAgeGrace}, {"keepalive_time", l.KeepaliveTime},
		{"keepalive_timeout", l.KeepaliveTimeout}, {"keepalive_min_time", l.KeepaliveMinTime},
	} {
		if d.v < 0 {
			e.add(f+"."+d.name, "must not be negative, got %s", d.v)
		}
	}
	if l.StreamWindow != 0 && l.StreamWindow < 65535 {
		e.add(f+".stream_window", "must be at least 65535, got %d", l.StreamWindow)
	}
	if l.ConnWindow != 0 && l.ConnWindow < 65535 {
		e.add(f+".conn_window", "must be at least 65535, got %d", l.ConnWindow)
	}
	if l.MaxRecvMessageSize < 0 || l.MaxRecvMessageSize > 64<<20 {
		e.add(f+".max_recv_message_size", "must be in [1, 67108864], got %d", l.MaxRecvMessageSize)
	}
	if l.MaxSendMessageSize < 0 || l.MaxSendMessageSize > 64<<20 {
		e.add(f+".max_send_message_size", "must be in [1, 67108864], got %d", l.MaxSendMessageSize)
	}
	if l.MaxHeaderListSize < 0 || l.MaxHeaderListSize > 16<<20 {
		e.add(f+".max_header_list_size", "must be in [1024, 16777216], got %d", l.MaxHeaderListSize)
	} else if l.MaxHeaderListSize != 0 && l.MaxHeaderListSize < 1024 {
		e.add(f+".max_header_list_size", "must be in [1024, 16777216], got %d", l.MaxHeaderListSize)
	}
}
