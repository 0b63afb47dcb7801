package config

import (
	"fmt"
	"maps"
	"net"
	"strconv"
	"time"
)

// XDS configures the embedded xDS control plane (package xds). The data
// path ignores it.
//
//	xds:
//	  address: 127.0.0.1:18000          # or unix:/run/meshgate/xds.sock
//	  cert_poll: 1s                     # how often certificate files are re-read
//	  envoy:
//	  - node: idc                       # Envoy --service-node / node.id
//	    admin_address: 127.0.0.1:9911   # used by `meshgate envoy-bootstrap`
//	    listeners:
//	    - name: private_in
//	      address: 127.0.0.1:10000
//	      protocol: private             # private (tcp_proxy) | grpc (HTTP/2 HCM)
//	      tls: {cert_file: c.pem, key_file: k.pem, ca_file: ca.pem}  # terminate (m)TLS
//	      wasm: {file: bin/mgp_filter.wasm, config: {allow_cmds: [1]}}
//	      route_to: {cluster: cloud}    # or {meshgate_listener: NAME}
//	      routes:                       # grpc only, first match wins, before route_to
//	      - {prefix: /demo.Echo/, route_to: {meshgate_listener: grpc_in}}
//	    clusters:
//	    - name: cloud
//	      protocol: private             # grpc => HTTP/2 upstream, pooled
//	      endpoints: [127.0.0.1:10100]
//	      tls: {cert_file: .., key_file: .., ca_file: .., server_name: cloud}
//	  limits: {max_connections: 4096, max_streams: 8192, max_streams_per_identity: 1024}   # 0: these defaults
//	  grpc_clients:                     # proxyless gRPC: xds:///NAME
//	  - name: legacy-bridge
//	    route_to: {meshgate_listener: grpc_in}
type XDS struct {
	// Address the ADS server listens on: host:port or unix:/path.
	Address string `yaml:"address" json:"address"`
	// CertPoll is how often certificate files referenced here are
	// re-read (fsnotify events also trigger a re-read); default 1s.
	CertPoll time.Duration `yaml:"cert_poll,omitempty" json:"cert_poll,omitempty"`
	// Envoy lists the Envoy nodes this control plane configures.
	Envoy []EnvoyNode `yaml:"envoy,omitempty" json:"envoy,omitempty"`
	// GRPCClients are the xds:///NAME targets served to proxyless gRPC
	// clients (the nodes of Proxyless).
	GRPCClients []GRPCClient `yaml:"grpc_clients,omitempty" json:"grpc_clients,omitempty"`
	// TLS is the control plane's mutual TLS (required on TCP); see xdssec.go.
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Insecure allows plaintext ADS on a loopback TCP address.
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
	// SocketMode is the octal file mode of a unix socket; default "0600".
	SocketMode string `yaml:"socket_mode,omitempty" json:"socket_mode,omitempty"`
	// Proxyless lists the proxyless gRPC client nodes and their identities.
	Proxyless []ProxylessNode `yaml:"proxyless_nodes,omitempty" json:"proxyless_nodes,omitempty"`
	// Limits bound what xDS clients may hold (defaults: docs/security-xds.md).
	Limits XDSLimits `yaml:"limits,omitempty" json:"limits,omitempty"`
}

// XDSLimits bound the ADS listener; 0 keeps the default. The replicas of
// one workload share an identity: max_streams_per_identity must cover
// them all (one ADS stream each).
type XDSLimits struct {
	// MaxConnections: open connections (default 4096); more are closed
	// as soon as they are accepted.
	MaxConnections int `yaml:"max_connections,omitempty" json:"max_connections,omitempty"`
	// MaxStreams: open ADS streams in all (default 8192).
	MaxStreams int `yaml:"max_streams,omitempty" json:"max_streams,omitempty"`
	// MaxStreamsPerIdentity: open streams of one client certificate
	// identity over all its connections (default 1024).
	MaxStreamsPerIdentity int `yaml:"max_streams_per_identity,omitempty" json:"max_streams_per_identity,omitempty"`
}

// EnvoyNode is one Envoy's configuration.
type EnvoyNode struct {
	// Node is the Envoy node id.
	Node string `yaml:"node" json:"node"`
	// Cluster is the Envoy node cluster; default "meshgate".
	Cluster string `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	// AdminAddress is where the bootstrap puts Envoy's admin; default
	// 127.0.0.1:9902.
	AdminAddress string          `yaml:"admin_address,omitempty" json:"admin_address,omitempty"`
	Listeners    []EnvoyListener `yaml:"listeners" json:"listeners"`
	Clusters     []EnvoyCluster  `yaml:"clusters,omitempty" json:"clusters,omitempty"`
	// Identities may claim this node id on ADS: "dns:NAME" (a DNS SAN)
	// or a URI SAN (spiffe://…); default ["dns:<node>"].
	Identities []string `yaml:"identities,omitempty" json:"identities,omitempty"`
	// XDSTLS is the client certificate this Envoy presents to the control
	// plane; `meshgate envoy-bootstrap` writes these paths verbatim (as
	// Envoy sees them) into the xds cluster's transport socket.
	XDSTLS *TLS `yaml:"xds_tls,omitempty" json:"xds_tls,omitempty"`
}

// Envoy listener/cluster protocols.
const (
	EnvoyPrivate = "private" // raw TCP (tcp_proxy)
	EnvoyGRPC    = "grpc"    // HTTP/2 gRPC
)

// EnvoyListener is one Envoy listener.
type EnvoyListener struct {
	Name     string `yaml:"name" json:"name"`
	Address  string `yaml:"address" json:"address"`
	Protocol string `yaml:"protocol" json:"protocol"`
	// TLS terminates TLS; with CAFile a client certificate is required.
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Wasm puts the MGP proxy-wasm network filter before tcp_proxy
	// (private listeners only).
	Wasm *EnvoyWasm `yaml:"wasm,omitempty" json:"wasm,omitempty"`
	// RouteTo is where traffic goes (grpc: the default route).
	RouteTo RouteTo `yaml:"route_to" json:"route_to"`
	// Routes (grpc only) match a path prefix before RouteTo.
	Routes []EnvoyRoute `yaml:"routes,omitempty" json:"routes,omitempty"`
}

// EnvoyWasm is the proxy-wasm filter settings.
type EnvoyWasm struct {
	File   string `yaml:"file" json:"file"`
	RootID string `yaml:"root_id,omitempty" json:"root_id,omitempty"`
	// Config is passed to the plugin as JSON.
	Config map[string]any `yaml:"config,omitempty" json:"config,omitempty"`
}

// RouteTo names exactly one destination: a MeshGate listener of this
// config (its address becomes a cluster) or a cluster of the same node.
type RouteTo struct {
	MeshgateListener string `yaml:"meshgate_listener,omitempty" json:"meshgate_listener,omitempty"`
	Cluster          string `yaml:"cluster,omitempty" json:"cluster,omitempty"`
}

// EnvoyRoute is a gRPC path-prefix route.
type EnvoyRoute struct {
	Prefix  string  `yaml:"prefix" json:"prefix"`
	RouteTo RouteTo `yaml:"route_to" json:"route_to"`
}

// EnvoyCluster is an upstream cluster of one Envoy.
type EnvoyCluster struct {
	Name      string   `yaml:"name" json:"name"`
	Protocol  string   `yaml:"protocol" json:"protocol"`
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
	// ConnectTimeout defaults to 2s.
	ConnectTimeout time.Duration `yaml:"connect_timeout,omitempty" json:"connect_timeout,omitempty"`
	// TLS originates (m)TLS; CAFile verifies the server.
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
}

// GRPCClient is a proxyless gRPC target (xds:///Name).
type GRPCClient struct {
	Name string `yaml:"name" json:"name"`
	// RouteTo: a MeshGate listener (kind grpc), or Endpoints.
	RouteTo   RouteTo  `yaml:"route_to,omitempty" json:"route_to,omitempty"`
	Endpoints []string `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
}

// XDS defaults.
const (
	DefaultCertPoll          = time.Second
	DefaultEnvoyCluster      = "meshgate"
	DefaultEnvoyAdminAddress = "127.0.0.1:9902"
	DefaultConnectTimeout    = 2 * time.Second
)

func (x *XDS) applyDefaults() {
	setDefault(&x.CertPoll, DefaultCertPoll)
	x.applySecurityDefaults()
	for i := range x.Envoy {
		n := &x.Envoy[i]
		setDefault(&n.Cluster, DefaultEnvoyCluster)
		setDefault(&n.AdminAddress, DefaultEnvoyAdminAddress)
		for j := range n.Clusters {
			setDefault(&n.Clusters[j].ConnectTimeout, DefaultConnectTimeout)
		}
	}
}

// MeshgateListener returns the MeshGate listener called name, or nil.
func (c *Config) MeshgateListener(name string) *Listener {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i]
		}
	}
	return nil
}

func (x *XDS) validate(c *Config, e *errs) {
	checkAddr(e, "xds.address", x.Address)
	checkNotNegative(e, "xds.cert_poll", x.CertPoll)
	checkRange(e, "xds.limits.max_connections", x.Limits.MaxConnections, 0, 1<<20)
	checkRange(e, "xds.limits.max_streams", x.Limits.MaxStreams, 0, 1<<20)
	if checkRange(e, "xds.limits.max_streams_per_identity", x.Limits.MaxStreamsPerIdentity, 0, 1<<20) &&
		x.Limits.MaxStreams > 0 && x.Limits.MaxStreamsPerIdentity > x.Limits.MaxStreams {
		e.add("xds.limits.max_streams_per_identity", "exceeds xds.limits.max_streams")
	}
	nodes := map[string]bool{}
	for i := range x.Envoy {
		n := &x.Envoy[i]
		f := fmt.Sprintf("xds.envoy[%d]", i)
		checkName(e, f+".node", n.Node, "node", nodes)
		checkAddr(e, f+".admin_address", n.AdminAddress)
		clusters := map[string]*EnvoyCluster{}
		cnames := map[string]bool{}
		for j := range n.Clusters {
			cl := &n.Clusters[j]
			cf := fmt.Sprintf("%s.clusters[%d]", f, j)
			checkName(e, cf+".name", cl.Name, "cluster", cnames)
			clusters[cl.Name] = cl
			checkOneOf(e, cf+".protocol", cl.Protocol, EnvoyPrivate, EnvoyGRPC)
			checkListed(e, cf+".endpoints", len(cl.Endpoints), "endpoint")
			for k, ep := range cl.Endpoints {
				checkHostPort(e, fmt.Sprintf("%s.endpoints[%d]", cf, k), ep)
			}
			checkNotNegative(e, cf+".connect_timeout", cl.ConnectTimeout)
			checkTLS(e, cf+".tls", cl.TLS, false)
		}
		lnames := map[string]bool{}
		for j := range n.Listeners {
			l := &n.Listeners[j]
			lf := fmt.Sprintf("%s.listeners[%d]", f, j)
			checkName(e, lf+".name", l.Name, "listener", lnames)
			checkHostPort(e, lf+".address", l.Address)
			checkOneOf(e, lf+".protocol", l.Protocol, EnvoyPrivate, EnvoyGRPC)
			checkTLS(e, lf+".tls", l.TLS, true)
			if l.Wasm != nil {
				if l.Protocol != EnvoyPrivate {
					e.add(lf+".wasm", "only private listeners carry the wasm filter")
				}
				if l.Wasm.File == "" {
					e.add(lf+".wasm.file", "required")
				}
				checkWasmConfig(e, lf+".wasm.config", l.Wasm.Config)
			}
			checkRouteTo(e, c, lf+".route_to", l.RouteTo, l.Protocol, clusters)
			if len(l.Routes) > 0 && l.Protocol != EnvoyGRPC {
				e.add(lf+".routes", "only grpc listeners have routes")
			}
			for k, r := range l.Routes {
				rf := fmt.Sprintf("%s.routes[%d]", lf, k)
				if len(r.Prefix) == 0 || r.Prefix[0] != '/' {
					e.add(rf+".prefix", "must start with /")
				}
				checkRouteTo(e, c, rf+".route_to", r.RouteTo, l.Protocol, clusters)
			}
		}
	}
	gnames := maps.Clone(nodes) // a client's name is a node id too
	for i, g := range x.GRPCClients {
		f := fmt.Sprintf("xds.grpc_clients[%d]", i)
		checkName(e, f+".name", g.Name, "name", gnames)
		if g.RouteTo.Cluster != "" {
			e.add(f+".route_to.cluster", "proxyless clients route to a meshgate_listener or endpoints")
		}
		if (g.RouteTo.MeshgateListener == "") == (len(g.Endpoints) == 0) {
			e.add(f, "exactly one of route_to.meshgate_listener or endpoints is required")
		}
		if g.RouteTo.MeshgateListener != "" {
			checkRouteTo(e, c, f+".route_to", g.RouteTo, EnvoyGRPC, nil)
		}
		for k, ep := range g.Endpoints {
			checkHostPort(e, fmt.Sprintf("%s.endpoints[%d]", f, k), ep)
		}
	}
	x.validateSecurity(e, nodes)
}

func checkRouteTo(e *errs, c *Config, f string, r RouteTo, proto string, clusters map[string]*EnvoyCluster) {
	if (r.MeshgateListener == "") == (r.Cluster == "") {
		e.add(f, "exactly one of meshgate_listener or cluster is required")
		return
	}
	if r.MeshgateListener != "" {
		ml := c.MeshgateListener(r.MeshgateListener)
		switch {
		case ml == nil:
			e.add(f+".meshgate_listener", "unknown listener %q", r.MeshgateListener)
		case ml.Kind != proto:
			e.add(f+".meshgate_listener", "listener %q is kind %s; a %s route needs a %s listener", ml.Name, ml.Kind, proto, proto)
		case ml.TLS != nil:
			e.add(f+".meshgate_listener", "listener %q terminates TLS itself; route to a plaintext listener", ml.Name)
		default:
			checkHostPort(e, f+".meshgate_listener", ml.Address)
		}
		return
	}
	cl := clusters[r.Cluster]
	switch {
	case cl == nil:
		e.add(f+".cluster", "unknown cluster %q", r.Cluster)
	case cl.Protocol != proto:
		e.add(f+".cluster", "cluster %q speaks %s; a %s listener needs a %s cluster", r.Cluster, cl.Protocol, proto, proto)
	}
}

// checkHostPort requires host:port with a numeric, non-zero port (Envoy
// needs a concrete address).
func checkHostPort(e *errs, field, addr string) {
	host, port, ok := splitHostPort(addr)
	if !ok || host == "" {
		e.add(field, "must be host:port, got %q", addr)
		return
	}
	if port == 0 {
		e.add(field, "port must be 1-65535 (Envoy needs a concrete port), got %q", addr)
	}
}

// splitHostPort splits "host:port" with a numeric port.
func splitHostPort(addr string) (string, int, bool) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, false
	}
	return h, n, true
}
