// Package model is the xDS control plane's input: a small, resolved
// description of what every Envoy node and every proxyless gRPC client
// should receive, independent of MeshGate's config file.
//
// It plays the part of Contour's DAG or Envoy Gateway's IR: the config
// package validates the YAML, applies defaults and builds a model
// ((*config.Config).XDSModel); package xds translates the model into
// Envoy resources (listeners, routes, clusters, endpoints, SDS secrets),
// renders bootstraps from it and enforces its access rules. So xds never
// reads config structs, and a config change that does not change the
// model cannot change what Envoy receives.
//
// A model holds plain values only: every default is applied (no zero
// value means "default"), every either/or choice of the YAML is resolved
// (a route names its cluster, whatever the YAML said), file paths are
// resolved against the config file's directory, and the names Envoy
// sees (clusters, SDS secrets, wasm plugins) are chosen here. A model is
// immutable once built: the builder shares no slice or pointer with the
// config, and consumers must not modify it (Clone gives a private copy).
//
// Adding an Envoy feature: a config field and its validation (package
// config), its resolved form here, the builder filling it, the
// translator emitting it (package xds), and a golden case in
// xds/testdata/model/ (see docs/architecture.md).
package model

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// XDS is everything the control plane serves.
type XDS struct {
	// Server is how the control plane itself listens and whom it trusts.
	Server Server `yaml:"server"`
	// Nodes are the Envoy nodes, each with its own resources.
	Nodes []Node `yaml:"nodes,omitempty"`
	// Proxyless is what proxyless gRPC clients receive (one shared set).
	Proxyless Proxyless `yaml:"proxyless,omitempty"`
}

// Server is the ADS endpoint's transport and security.
type Server struct {
	// Address is where ADS listens: TCP host:port or a unix socket.
	Address Address `yaml:"address"`
	// TLS is the control plane's mutual TLS; nil means plaintext, which
	// the config allows only on a unix socket or, with Insecure, on a
	// loopback address.
	TLS *ServerTLS `yaml:"tls,omitempty"`
	// Insecure: plaintext on a loopback TCP address was asked for.
	Insecure bool `yaml:"insecure,omitempty"`
	// SocketMode is the file mode of a unix socket (permission bits).
	SocketMode uint32 `yaml:"socket_mode"`
	// CertPoll is how often the certificate files are re-read (> 0).
	CertPoll time.Duration `yaml:"cert_poll"`
	// MaxConnections, MaxStreams and MaxStreamsPerIdentity bound the ADS
	// listener (0: the xds package's defaults).
	MaxConnections        int `yaml:"max_connections,omitempty"`
	MaxStreams            int `yaml:"max_streams,omitempty"`
	MaxStreamsPerIdentity int `yaml:"max_streams_per_identity,omitempty"`
}

// ServerTLS is the control plane's certificate and the CA its clients'
// certificates must chain to (resolved file paths).
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// Node is one Envoy.
type Node struct {
	// ID is the Envoy node id.
	ID string `yaml:"id"`
	// Cluster is the Envoy node cluster (bootstrap).
	Cluster string `yaml:"cluster"`
	// Admin is where the bootstrap puts Envoy's admin interface.
	Admin Address `yaml:"admin"`
	// Identities may claim ID on an ADS stream: "dns:NAME" (lower case)
	// or a URI SAN, verbatim.
	Identities []string `yaml:"identities,omitempty"`
	// XDSClientTLS is the certificate this Envoy presents to the control
	// plane (paths as Envoy sees them, written verbatim into the
	// bootstrap); nil: plaintext.
	XDSClientTLS *ClientTLS `yaml:"xds_client_tls,omitempty"`
	// Listeners in config order.
	Listeners []Listener `yaml:"listeners,omitempty"`
	// Clusters: the node's own in config order, then the clusters
	// reaching MeshGate listeners in order of first use.
	Clusters []Cluster `yaml:"clusters,omitempty"`
}

// ClientTLS is a client certificate, its key and the CA verifying the
// server; ServerName, when set, is sent as SNI and required as a DNS SAN.
type ClientTLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name,omitempty"`
}

// Protocol is what a listener accepts or a cluster speaks.
type Protocol string

// Protocols.
const (
	// TCP is opaque bytes (MGP/1 frames): tcp_proxy on a listener, plain
	// TCP to a cluster.
	TCP Protocol = "tcp"
	// GRPC is HTTP/2: an HTTP connection manager with path-prefix routes
	// on a listener, pooled HTTP/2 (ALPN h2 with TLS) to a cluster.
	GRPC Protocol = "grpc"
)

// Listener is one Envoy listener with one filter chain.
type Listener struct {
	Name     string   `yaml:"name"`
	Address  Address  `yaml:"address"`
	Protocol Protocol `yaml:"protocol"`
	// Wasm is the MGP proxy-wasm network filter placed before tcp_proxy
	// (TCP listeners only); nil: none.
	Wasm *Wasm `yaml:"wasm,omitempty"`
	// Cluster receives a TCP listener's connections.
	Cluster string `yaml:"cluster,omitempty"`
	// Routes of a GRPC listener, first match wins; the builder ends them
	// with the "/" default route. Their route configuration is named
	// like the listener.
	Routes []Route `yaml:"routes,omitempty"`
	// TLS terminates TLS; nil: plaintext.
	TLS *DownstreamTLS `yaml:"tls,omitempty"`
}

// Route sends requests whose path starts with PathPrefix to Cluster.
type Route struct {
	PathPrefix string `yaml:"path_prefix"`
	Cluster    string `yaml:"cluster"`
}

// Wasm is a proxy-wasm network filter.
type Wasm struct {
	// Name is the plugin name (unique per listener).
	Name   string `yaml:"name"`
	RootID string `yaml:"root_id,omitempty"`
	// File is the module's path as Envoy reads it.
	File string `yaml:"file"`
	// Config is the plugin configuration, JSON.
	Config string `yaml:"config"`
}

// LBPolicy is a cluster's load-balancing policy.
type LBPolicy string

// Load-balancing policies.
const (
	RoundRobin LBPolicy = "round_robin"
)

// Cluster is an upstream cluster; its endpoints go out by EDS under the
// same name.
type Cluster struct {
	Name           string        `yaml:"name"`
	Protocol       Protocol      `yaml:"protocol"`
	Endpoints      []Address     `yaml:"endpoints"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	LB             LBPolicy      `yaml:"lb"`
	// TLS originates TLS; nil: plaintext.
	TLS *UpstreamTLS `yaml:"tls,omitempty"`
}

// TLS is the part of a TLS context common to both directions. The
// certificate and the trusted CA reach Envoy as SDS secrets (so rotating
// the files pushes secrets only).
type TLS struct {
	// Certificate presented; nil: none.
	Certificate *CertificateSecret `yaml:"certificate,omitempty"`
	// Validation verifies the peer; nil: the peer is not verified.
	Validation *ValidationSecret `yaml:"validation,omitempty"`
	// MatchDNSSAN, with Validation, is a DNS SAN the peer's certificate
	// must carry ("" accepts any name the CA signed).
	MatchDNSSAN string `yaml:"match_dns_san,omitempty"`
}

// DownstreamTLS terminates TLS on a listener.
type DownstreamTLS struct {
	TLS `yaml:",inline"`
	// RequireClientCertificate: clients must present a certificate (set
	// when Validation is).
	RequireClientCertificate bool `yaml:"require_client_certificate,omitempty"`
}

// UpstreamTLS originates TLS to a cluster.
type UpstreamTLS struct {
	TLS `yaml:",inline"`
	// SNI sent to the upstream ("" none).
	SNI string `yaml:"sni,omitempty"`
}

// CertificateSecret is an SDS secret holding a certificate chain and its
// private key, read from two files.
type CertificateSecret struct {
	Name     string `yaml:"name"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// ValidationSecret is an SDS secret holding trusted CA certificates.
type ValidationSecret struct {
	Name   string `yaml:"name"`
	CAFile string `yaml:"ca_file"`
}

// Proxyless is what proxyless gRPC clients (grpc-go's xDS resolver,
// target xds:///NAME) receive and who may ask.
type Proxyless struct {
	// Nodes may fetch Services.
	Nodes []ProxylessNode `yaml:"nodes,omitempty"`
	// Services are the xds:/// targets.
	Services []Service `yaml:"services,omitempty"`
}

// ProxylessNode is one proxyless client node id and the identities
// allowed to claim it (like Node.Identities).
type ProxylessNode struct {
	ID         string   `yaml:"id"`
	Identities []string `yaml:"identities,omitempty"`
}

// Service is one xds:///Name target: an API listener with an inline
// route to Cluster, whose endpoints go out by EDS.
type Service struct {
	Name           string        `yaml:"name"`
	Cluster        string        `yaml:"cluster"`
	Endpoints      []Address     `yaml:"endpoints"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// Address is a TCP host and port, or a unix socket path. Its text form
// is "host:port" or "unix:/path".
type Address struct {
	Host string
	Port uint32
	// Unix is a unix socket path (Host and Port empty).
	Unix string
}

// ParseAddress parses "host:port" (numeric port) or "unix:/path". A host
// "localhost" becomes 127.0.0.1: Envoy wants IP literals.
func ParseAddress(s string) (Address, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return Address{}, fmt.Errorf("bad address %q: empty unix socket path", s)
		}
		return Address{Unix: path}, nil
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return Address{}, fmt.Errorf("bad address %q: %w", s, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return Address{}, fmt.Errorf("bad address %q: port: %w", s, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	return Address{Host: host, Port: uint32(port)}, nil
}

// String is the text form: "host:port" or "unix:/path".
func (a Address) String() string {
	if a.Unix != "" {
		return "unix:" + a.Unix
	}
	return net.JoinHostPort(a.Host, strconv.FormatUint(uint64(a.Port), 10))
}

// MarshalText renders the text form (YAML/JSON golden files).
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses the text form.
func (a *Address) UnmarshalText(b []byte) error {
	v, err := ParseAddress(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Clone returns a deep copy of m (nil for nil).
func (m *XDS) Clone() *XDS {
	if m == nil {
		return nil
	}
	out := &XDS{Server: m.Server}
	out.Server.TLS = clonePtr(m.Server.TLS)
	out.Nodes = make([]Node, len(m.Nodes))
	for i, n := range m.Nodes {
		n.Identities = clone(n.Identities)
		n.XDSClientTLS = clonePtr(n.XDSClientTLS)
		n.Listeners = clone(n.Listeners)
		for j := range n.Listeners {
			l := &n.Listeners[j]
			l.Wasm = clonePtr(l.Wasm)
			l.Routes = clone(l.Routes)
			if l.TLS != nil {
				t := *l.TLS
				t.TLS = t.TLS.clone()
				l.TLS = &t
			}
		}
		n.Clusters = clone(n.Clusters)
		for j := range n.Clusters {
			c := &n.Clusters[j]
			c.Endpoints = clone(c.Endpoints)
			if c.TLS != nil {
				t := *c.TLS
				t.TLS = t.TLS.clone()
				c.TLS = &t
			}
		}
		out.Nodes[i] = n
	}
	if m.Nodes == nil {
		out.Nodes = nil
	}
	out.Proxyless.Nodes = clone(m.Proxyless.Nodes)
	for i := range out.Proxyless.Nodes {
		out.Proxyless.Nodes[i].Identities = clone(out.Proxyless.Nodes[i].Identities)
	}
	out.Proxyless.Services = clone(m.Proxyless.Services)
	for i := range out.Proxyless.Services {
		out.Proxyless.Services[i].Endpoints = clone(out.Proxyless.Services[i].Endpoints)
	}
	return out
}

func (t TLS) clone() TLS {
	t.Certificate = clonePtr(t.Certificate)
	t.Validation = clonePtr(t.Validation)
	return t
}

// Node returns the Envoy node with id, or nil.
func (m *XDS) Node(id string) *Node {
	for i := range m.Nodes {
		if m.Nodes[i].ID == id {
			return &m.Nodes[i]
		}
	}
	return nil
}

func clone[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
