// Package config is MeshGate's one configuration model. It feeds both the
// data path (package meshgate) and the control plane (package xds).
//
// A Config is loaded from YAML with unknown fields rejected, defaults
// applied, then validated; every validation error names the field by its
// YAML path (e.g. "listeners[1].routes[0].upstream"). A loaded Config is
// treated as immutable.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("config: invalid")

// Config is the whole MeshGate configuration.
type Config struct {
	// Admin is the admin HTTP server (/healthz, /readyz, /metrics, /config, pprof).
	Admin Admin `yaml:"admin" json:"admin"`
	// Codecs declares extra codecs from declarative descriptions
	// (codec/fixed); built-in codecs ("mgp") need no entry.
	Codecs []CodecSpec `yaml:"codecs,omitempty" json:"codecs,omitempty"`
	// Listeners accept traffic: kind "private" (private→gRPC) or "grpc"
	// (gRPC→private).
	Listeners []Listener `yaml:"listeners" json:"listeners"`
	// Upstreams are the backends routes send to.
	Upstreams []Upstream `yaml:"upstreams" json:"upstreams"`
	// Readiness is what /readyz waits for from the upstreams: all | any | none (default all; see lifecycle.go).
	Readiness string `yaml:"readiness,omitempty" json:"readiness,omitempty"`
	// Timeouts and limits shared by all listeners unless overridden.
	Defaults Defaults `yaml:"defaults" json:"defaults"`
	// XDS configures the embedded control plane (optional).
	XDS *XDS `yaml:"xds,omitempty" json:"xds,omitempty"`
	// TLS holds settings shared by every listener and upstream TLS block.
	TLS TLSSettings `yaml:"tls,omitempty" json:"tls"`
	// Migrate holds migration control settings (migrate.go).
	Migrate Migrate `yaml:"migrate,omitempty" json:"migrate"`
	// Switches are service switches routes can name (resilience.go).
	Switches []Switch `yaml:"switches,omitempty" json:"switches,omitempty"`
	// Telemetry and AccessLog: see observability.go.
	Telemetry *Telemetry `yaml:"telemetry,omitempty" json:"telemetry,omitempty"`
	AccessLog *AccessLog `yaml:"access_log,omitempty" json:"access_log,omitempty"`

	baseDir string // directory of the config file, for relative paths
}

// Admin is the admin HTTP endpoint.
type Admin struct {
	Address string `yaml:"address" json:"address"` // default 127.0.0.1:9901; "" after defaults never
	// HealthAddress, when set, serves only /healthz, /readyz and /metrics
	// (never /config or pprof), e.g. 0.0.0.0:9900 for probes and scrapes.
	HealthAddress string `yaml:"health_address,omitempty" json:"health_address,omitempty"`
	// PProf serves /debug/pprof/ on Address; default off.
	PProf bool `yaml:"pprof,omitempty" json:"pprof,omitempty"`
}

// CodecSpec declares a declarative codec by name.
type CodecSpec struct {
	Name string `yaml:"name" json:"name"`
	// File is a path to a codec/fixed YAML description; relative paths are
	// resolved against the config file's directory.
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	// Spec is an inline codec/fixed description (alternative to File).
	Spec yaml.Node `yaml:"spec,omitempty" json:"-"`
}

// Listener kinds.
const (
	KindPrivate = "private" // accepts private frames, calls gRPC upstreams
	KindGRPC    = "grpc"    // accepts gRPC calls, sends private frames upstream
)

// Listener is one accepting socket.
type Listener struct {
	Name    string `yaml:"name" json:"name"`
	Kind    string `yaml:"kind" json:"kind"`
	Address string `yaml:"address" json:"address"`
	// Codec is the private protocol spoken (kind private); default "mgp".
	Codec string `yaml:"codec,omitempty" json:"codec,omitempty"`
	// MaxFrameSize limits one frame (kind private); default 4 MiB.
	MaxFrameSize int `yaml:"max_frame_size,omitempty" json:"max_frame_size,omitempty"`
	// MaxInFlight caps concurrent requests per downstream connection.
	MaxInFlight int `yaml:"max_in_flight,omitempty" json:"max_in_flight,omitempty"`
	// Auth, when set, requires the MGP auth extension (HMAC) on every request.
	Auth *Auth `yaml:"auth,omitempty" json:"auth,omitempty"`
	// Authz, when set, allows only the listed identity × cmd/method pairs.
	Authz *Authz `yaml:"authz,omitempty" json:"authz,omitempty"`
	// TLS, when set, terminates (m)TLS on this listener.
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Routes map requests to upstreams, first match wins.
	Routes []Route `yaml:"routes" json:"routes"`
	// Limits bound one client's resources (limits.go); defaults.limits fill the rest.
	Limits *Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
	// Push tracks uin → connection (private) or serves the push API (grpc); see push.go.
	Push *ListenerPush `yaml:"push,omitempty" json:"push,omitempty"`
	// Overload is a listener-wide admission cap with a core reserve (resilience.go).
	Overload *Overload `yaml:"overload,omitempty" json:"overload,omitempty"`
	// GRPCTransport: direct (default) | grpc-go (grpcserve.go).
	GRPCTransport string `yaml:"grpc_transport,omitempty" json:"grpc_transport,omitempty"`

	ListenerObservability `yaml:",inline"` // observability.go
}

// Auth configures HMAC verification of the MGP auth extension.
type Auth struct {
	// Keys maps key_id to a shared secret.
	Keys map[uint32]string `yaml:"keys" json:"-"`
	// MaxSkew bounds |now - unix_ms|; default 30s.
	MaxSkew time.Duration `yaml:"max_skew,omitempty" json:"max_skew,omitempty"`
	// MaxNonces bounds the replay cache; default DefaultMaxNonces(MaxSkew).
	MaxNonces int `yaml:"max_nonces,omitempty" json:"max_nonces,omitempty"`
	// MaxNoncesPerKey bounds one key id's share of MaxNonces; default
	// DefaultMaxNoncesPerKey.
	MaxNoncesPerKey int `yaml:"max_nonces_per_key,omitempty" json:"max_nonces_per_key,omitempty"`
}

// TLS is a certificate set; files are re-read when they change.
type TLS struct {
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
	// CAFile, when set, verifies the peer (mTLS on a listener).
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// ServerName is the SNI / expected name when dialing.
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
}

// Route maps a request to an upstream.
//
// On a private listener it matches Cmd (and optionally a UIN range) and
// names the gRPC Method to call. On a grpc listener it matches Method (exact,
// or every method of a service with "/pkg.Svc/*") and names the Cmd to send.
type Route struct {
	Cmd    uint32 `yaml:"cmd,omitempty" json:"cmd,omitempty"`
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// UINMin/UINMax, when UINMax > 0, restrict a private route to a uin
	// range (gray release by user).
	UINMin   uint64 `yaml:"uin_min,omitempty" json:"uin_min,omitempty"`
	UINMax   uint64 `yaml:"uin_max,omitempty" json:"uin_max,omitempty"`
	Upstream string `yaml:"upstream" json:"upstream"`
	// Split and Shadow: migration control (migrate.go).
	Split  *Split  `yaml:"split,omitempty" json:"split,omitempty"`
	Shadow *Shadow `yaml:"shadow,omitempty" json:"shadow,omitempty"`
	// Timeout applies when the request carries no deadline; default
	// Defaults.Timeout.
	Timeout      time.Duration                   `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Oneway       bool                            `yaml:"oneway,omitempty" json:"oneway,omitempty"` // grpc listener only; see mapping.go
	RouteRewrite `yaml:",inline" json:",inline"` // rewrite_cmd / rewrite_method (reshape.go)
	// Stream is unary (default) | server | client | bidi; see push.go.
	Stream string `yaml:"stream,omitempty" json:"stream,omitempty"`
	// RouteResilience: idempotent, core, retry_on, max_attempts, hedge_delay, switch (resilience.go).
	RouteResilience `yaml:",inline"`

	RouteObservability `yaml:",inline"` // observability.go
}

// Upstream protocols.
const (
	ProtoGRPC    = "grpc"
	ProtoPrivate = "private"
)

// Load-balancing policies.
const (
	LBRoundRobin     = "round_robin"
	LBLeastRequest   = "least_request"
	LBConsistentHash = "consistent_hash" // on uin
)

// Upstream is a set of endpoints speaking one protocol.
type Upstream struct {
	Name      string   `yaml:"name" json:"name"`
	Protocol  string   `yaml:"protocol" json:"protocol"` // grpc | private
	Codec     string   `yaml:"codec,omitempty" json:"codec,omitempty"`
	Endpoints []string `yaml:"endpoints" json:"endpoints"` // host:port
	LB        string   `yaml:"lb,omitempty" json:"lb,omitempty"`
	// Connections per endpoint (HTTP/2 for grpc, multiplexed TCP for private).
	Connections int `yaml:"connections,omitempty" json:"connections,omitempty"`
	// MaxInFlight per connection (private); default 1024.
	MaxInFlight int `yaml:"max_in_flight,omitempty" json:"max_in_flight,omitempty"`
	// Heartbeat interval for idle private connections; 0 = default 10s.
	Heartbeat time.Duration `yaml:"heartbeat,omitempty" json:"heartbeat,omitempty"`
	// WriteTimeout bounds each socket write to a private endpoint: a
	// backend that takes no bytes for that long loses the connection
	// (its calls fail UNAVAILABLE); 0 = default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout,omitempty" json:"write_timeout,omitempty"`
	// TLS, when set, dials with (m)TLS.
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// ReconnectBackoffMax caps a grpc upstream's reconnect backoff (default 5s; see lifecycle.go).
	ReconnectBackoffMax time.Duration `yaml:"reconnect_backoff_max,omitempty" json:"reconnect_backoff_max,omitempty"`
	// Push says where the upstream's PUSH frames go (private; push.go).
	Push *UpstreamPush `yaml:"push,omitempty" json:"push,omitempty"`
	// Resilience: adaptive weights, outlier ejection, retry budget, circuit breaker (resilience.go).
	Resilience Resilience `yaml:"resilience,omitempty" json:"resilience"`
	// GRPCTransport: direct (default for static endpoints) | grpc-go (h2.go).
	GRPCTransport string `yaml:"grpc_transport,omitempty" json:"grpc_transport,omitempty"`

	UpstreamObservability `yaml:",inline"` // observability.go
}

// Defaults are shared limits.
type Defaults struct {
	Timeout      time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`             // default 3s
	DrainTimeout time.Duration `yaml:"drain_timeout,omitempty" json:"drain_timeout,omitempty"` // default 10s
	MaxInFlight  int           `yaml:"max_in_flight,omitempty" json:"max_in_flight,omitempty"` // per downstream conn, default 1024
	IdleTimeout  time.Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`   // downstream idle / slowloris, default 5m
	// ReadTimeout bounds receiving one whole frame once its first byte
	// arrived (slowloris guard); default 10s.
	ReadTimeout time.Duration `yaml:"read_timeout,omitempty" json:"read_timeout,omitempty"`
	// Limits are every listener's resource limits (limits.go).
	Limits Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
	// DrainGrace keeps gRPC listeners accepting after SIGTERM (default 2s; see lifecycle.go).
	DrainGrace time.Duration `yaml:"drain_grace,omitempty" json:"drain_grace,omitempty"`
}

// Parse decodes YAML, rejecting unknown fields, applies defaults and
// validates. dir resolves relative file paths ("" = current directory).
func Parse(data []byte, dir string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if uf := unknownFields(data); uf != nil {
			return nil, uf
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.baseDir = dir
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and parses a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, dirOf(path))
}
