package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	wasmnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshgate/meshgate/meshgate/config"
)

// ProxylessNode is the snapshot key served to every node id that is not an
// Envoy node of the config: proxyless gRPC clients.
const ProxylessNode = "_proxyless"

// Well-known names.
const (
	wasmRuntime        = "envoy.wasm.runtime.v8"
	wasmFilterName     = "envoy.filters.network.wasm"
	tcpProxyFilterName = "envoy.filters.network.tcp_proxy"
	hcmFilterName      = "envoy.filters.network.http_connection_manager"
	routerFilterName   = "envoy.filters.http.router"
	tlsSocketName      = "envoy.transport_sockets.tls"
	httpOptionsKey     = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Resources is what one node receives.
type Resources struct {
	Listeners []types.Resource
	Routes    []types.Resource
	Clusters  []types.Resource
	Endpoints []types.Resource
	Secrets   []types.Resource
}

// Files maps a file path to its content: the certificate files a config
// references (see CertFiles). The translator reads nothing itself.
type Files map[string][]byte

// secretTLS lists every TLS block of the xds config whose files become
// SDS secrets.
func secretTLS(cfg *config.Config) []*config.TLS {
	if cfg == nil || cfg.XDS == nil {
		return nil
	}
	var out []*config.TLS
	for _, n := range cfg.XDS.Envoy {
		for _, l := range n.Listeners {
			if l.TLS != nil {
				out = append(out, l.TLS)
			}
		}
		for _, c := range n.Clusters {
			if c.TLS != nil {
				out = append(out, c.TLS)
			}
		}
	}
	return out
}

// CertFiles lists the (resolved) certificate files the xds section
// references, sorted and without duplicates.
func CertFiles(cfg *config.Config) []string {
	set := map[string]bool{}
	for _, t := range secretTLS(cfg) {
		for _, p := range []string{t.CertFile, t.KeyFile, t.CAFile} {
			if p != "" {
				set[cfg.Path(p)] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Translate turns a validated config into the resources of every node:
// one entry per xds.envoy[].node, plus ProxylessNode when grpc_clients are
// configured. It is a pure function of cfg and files.
func Translate(cfg *config.Config, files Files) (map[string]*Resources, error) {
	if cfg == nil || cfg.XDS == nil {
		return map[string]*Resources{}, nil
	}
	out := map[string]*Resources{}
	var errs []error
	for i := range cfg.XDS.Envoy {
		n := &cfg.XDS.Envoy[i]
		r, err := translateNode(cfg, n, files)
		if err != nil {
			errs = append(errs, fmt.Errorf("xds.envoy[%d] (%s): %w", i, n.Node, err))
			continue
		}
		out[n.Node] = r
	}
	if len(cfg.XDS.GRPCClients) > 0 {
		r, err := translateProxyless(cfg)
		if err != nil {
			errs = append(errs, err)
		} else {
			out[ProxylessNode] = r
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// nodeBuilder accumulates one node's resources, deduplicating clusters and
// secrets by name.
type nodeBuilder struct {
	cfg      *config.Config
	files    Files
	res      *Resources
	clusters map[string]bool
	secrets  map[string]bool
}

func translateNode(cfg *config.Config, n *config.EnvoyNode, files Files) (*Resources, error) {
	b := &nodeBuilder{cfg: cfg, files: files, res: &Resources{}, clusters: map[string]bool{}, secrets: map[string]bool{}}
	for i := range n.Clusters {
		if err := b.addCluster(&n.Clusters[i]); err != nil {
			return nil, err
		}
	}
	for i := range n.Listeners {
		if err := b.addListener(&n.Listeners[i]); err != nil {
			return nil, err
		}
	}
	return b.res, nil
}

// meshgateCluster is the cluster name for a MeshGate listener target.
func meshgateCluster(listener string) string { return "meshgate/" + listener }

// target resolves a RouteTo to a cluster name, creating the MeshGate
// listener cluster on first use.
func (b *nodeBuilder) target(r config.RouteTo, proto string) (string, error) {
	if r.Cluster != "" {
		return r.Cluster, nil
	}
	ml := b.cfg.MeshgateListener(r.MeshgateListener)
	if ml == nil {
		return "", fmt.Errorf("unknown meshgate listener %q", r.MeshgateListener)
	}
	name := meshgateCluster(ml.Name)
	if !b.clusters[name] {
		if err := b.addCluster(&config.EnvoyCluster{
			Name: name, Protocol: proto, Endpoints: []string{ml.Address}, ConnectTimeout: config.DefaultConnectTimeout,
		}); err != nil {
			return "", err
		}
	}
	return name, nil
}

func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for messages of linked types
	}
	return a
}

func socketAddress(addr string) (*core.Address, error) {
	host, port, ok := config.SplitHostPort(addr)
	if !ok {
		return nil, fmt.Errorf("bad address %q", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}, nil
}

func loadAssignment(name string, eps []string) (*endpoint.ClusterLoadAssignment, error) {
	lb := make([]*endpoint.LbEndpoint, 0, len(eps))
	for _, ep := range eps {
		a, err := socketAddress(ep)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		lb = append(lb, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: a}}})
	}
	return &endpoint.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpoint.LocalityLbEndpoints{{
			// grpc-go NACKs localities without an ID and ignores
			// those without a weight.
			Locality:            &core.Locality{Region: "meshgate", Zone: "local"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints:         lb,
		}},
	}, nil
}

func edsCluster(name string, timeout time.Duration) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:       durationpb.New(timeout),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
	}
}

// http2Options forces HTTP/2 upstream: gRPC calls share pooled
// connections (connection reuse).
func http2Options() map[string]*anypb.Any {
	return map[string]*anypb.Any{httpOptionsKey: mustAny(&httpopts.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &core.Http2ProtocolOptions{},
				},
			},
		},
	})}
}

func (b *nodeBuilder) addCluster(c *config.EnvoyCluster) error {
	if b.clusters[c.Name] {
		return nil
	}
	b.clusters[c.Name] = true
	cl := edsCluster(c.Name, c.ConnectTimeout)
	if c.Protocol == config.EnvoyGRPC {
		cl.TypedExtensionProtocolOptions = http2Options()
	}
	if c.TLS != nil {
		ctx, err := b.commonTLS("cluster/"+c.Name, c.TLS, c.Protocol == config.EnvoyGRPC)
		if err != nil {
			return err
		}
		up := &tlsv3.UpstreamTlsContext{CommonTlsContext: ctx, Sni: c.TLS.ServerName}
		cl.TransportSocket = &core.TransportSocket{Name: tlsSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(up)}}
	}
	cla, err := loadAssignment(c.Name, c.Endpoints)
	if err != nil {
		return err
	}
	b.res.Clusters = append(b.res.Clusters, cl)
	b.res.Endpoints = append(b.res.Endpoints, cla)
	return nil
}

// secretName names the SDS secrets of one listener or cluster.
func secretName(owner, kind string) string { return owner + "/" + kind }

func (b *nodeBuilder) file(p string) ([]byte, error) {
	data, ok := b.files[b.cfg.Path(p)]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrMissingFile, b.cfg.Path(p))
	}
	return data, nil
}

// commonTLS builds a TLS context whose certificate and trusted CA come
// from SDS secrets (pushed over ADS), so rotating the files only pushes
// new secrets: listeners and clusters stay as they are and established
// connections keep going.
func (b *nodeBuilder) commonTLS(owner string, t *config.TLS, h2 bool) (*tlsv3.CommonTlsContext, error) {
	ctx := &tlsv3.CommonTlsContext{
		TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
	}
	if h2 {
		ctx.AlpnProtocols = []string{"h2"}
	}
	if t.CertFile != "" {
		name := secretName(owner, "cert")
		if !b.secrets[name] {
			cert, err := b.file(t.CertFile)
			if err != nil {
				return nil, err
			}
			key, err := b.file(t.KeyFile)
			if err != nil {
				return nil, err
			}
			b.secrets[name] = true
			b.res.Secrets = append(b.res.Secrets, &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: cert}},
				PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: key}},
			}}})
		}
		ctx.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: name, SdsConfig: adsSource()}}
	}
	if t.CAFile != "" {
		name := secretName(owner, "ca")
		if !b.secrets[name] {
			ca, err := b.file(t.CAFile)
			if err != nil {
				return nil, err
			}
			b.secrets[name] = true
			b.res.Secrets = append(b.res.Secrets, &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: ca}},
			}}})
		}
		def := &tlsv3.CertificateValidationContext{}
		if t.ServerName != "" {
			def.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: t.ServerName}},
			}}
		}
		ctx.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         def,
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()},
		}}
	}
	return ctx, nil
}

func (b *nodeBuilder) addListener(l *config.EnvoyListener) error {
	addr, err := socketAddress(l.Address)
	if err != nil {
		return fmt.Errorf("listener %s: %w", l.Name, err)
	}
	chain := &listener.FilterChain{}
	switch l.Protocol {
	case config.EnvoyPrivate:
		if l.Wasm != nil {
			f, err := b.wasmFilter(l)
			if err != nil {
				return err
			}
			chain.Filters = append(chain.Filters, f)
		}
		cl, err := b.target(l.RouteTo, config.EnvoyPrivate)
		if err != nil {
			return fmt.Errorf("listener %s: %w", l.Name, err)
		}
		chain.Filters = append(chain.Filters, &listener.Filter{Name: tcpProxyFilterName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
			StatPrefix:       l.Name,
			ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: cl},
		})}})
	case config.EnvoyGRPC:
		rc, err := b.routeConfig(l.Name, l.Routes, l.RouteTo)
		if err != nil {
			return fmt.Errorf("listener %s: %w", l.Name, err)
		}
		b.res.Routes = append(b.res.Routes, rc)
		m := &hcm.HttpConnectionManager{
			StatPrefix: l.Name,
			CodecType:  hcm.HttpConnectionManager_AUTO,
			RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
				ConfigSource: adsSource(), RouteConfigName: rc.Name,
			}},
			HttpFilters: []*hcm.HttpFilter{routerFilter()},
		}
		chain.Filters = append(chain.Filters, &listener.Filter{Name: hcmFilterName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(m)}})
	default:
		return fmt.Errorf("listener %s: unknown protocol %q", l.Name, l.Protocol)
	}
	if l.TLS != nil {
		ctx, err := b.commonTLS("listener/"+l.Name, l.TLS, l.Protocol == config.EnvoyGRPC)
		if err != nil {
			return err
		}
		down := &tlsv3.DownstreamTlsContext{CommonTlsContext: ctx}
		if l.TLS.CAFile != "" {
			down.RequireClientCertificate = wrapperspb.Bool(true)
		}
		chain.TransportSocket = &core.TransportSocket{Name: tlsSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(down)}}
	}
	b.res.Listeners = append(b.res.Listeners, &listener.Listener{
		Name:         l.Name,
		Address:      addr,
		FilterChains: []*listener.FilterChain{chain},
	})
	return nil
}

func routerFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: routerFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})}}
}

func (b *nodeBuilder) routeConfig(name string, routes []config.EnvoyRoute, def config.RouteTo) (*route.RouteConfiguration, error) {
	vh := &route.VirtualHost{Name: name, Domains: []string{"*"}}
	add := func(prefix string, to config.RouteTo) error {
		cl, err := b.target(to, config.EnvoyGRPC)
		if err != nil {
			return err
		}
		vh.Routes = append(vh.Routes, &route.Route{
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: prefix}},
			Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cl},
				// gRPC deadlines govern; no Envoy default 15s cut-off.
				Timeout: durationpb.New(0),
			}},
		})
		return nil
	}
	for _, r := range routes {
		if err := add(r.Prefix, r.RouteTo); err != nil {
			return nil, err
		}
	}
	if err := add("/", def); err != nil {
		return nil, err
	}
	return &route.RouteConfiguration{Name: name, VirtualHosts: []*route.VirtualHost{vh}}, nil
}

func (b *nodeBuilder) wasmFilter(l *config.EnvoyListener) (*listener.Filter, error) {
	conf := l.Wasm.Config
	if conf == nil {
		conf = map[string]any{}
	}
	js, err := json.Marshal(conf)
	if err != nil {
		return nil, fmt.Errorf("listener %s: wasm.config: %w", l.Name, err)
	}
	w := &wasmnet.Wasm{Config: &wasmv3.PluginConfig{
		Name:   "mgp/" + l.Name,
		RootId: l.Wasm.RootID,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId:    "mgp",
			Runtime: wasmRuntime,
			Code: &core.AsyncDataSource{Specifier: &core.AsyncDataSource_Local{Local: &core.DataSource{
				Specifier: &core.DataSource_Filename{Filename: b.cfg.Path(l.Wasm.File)},
			}}},
		}},
		Configuration: mustAny(wrapperspb.String(string(js))),
	}}
	return &listener.Filter{Name: wasmFilterName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(w)}}, nil
}

// proxylessCluster is the cluster name of a grpc_clients entry.
func proxylessCluster(name string) string { return "grpc/" + name }

// translateProxyless builds the shapes grpc-go's xDS client expects: a
// Listener named like the target with an ApiListener (HCM with an inline
// RouteConfiguration and the router filter), an EDS Cluster and its
// ClusterLoadAssignment.
func translateProxyless(cfg *config.Config) (*Resources, error) {
	res := &Resources{}
	for i, g := range cfg.XDS.GRPCClients {
		eps := g.Endpoints
		if g.RouteTo.MeshgateListener != "" {
			ml := cfg.MeshgateListener(g.RouteTo.MeshgateListener)
			if ml == nil {
				return nil, fmt.Errorf("xds.grpc_clients[%d]: unknown meshgate listener %q", i, g.RouteTo.MeshgateListener)
			}
			eps = []string{ml.Address}
		}
		cn := proxylessCluster(g.Name)
		m := &hcm.HttpConnectionManager{
			RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
				Name: g.Name,
				VirtualHosts: []*route.VirtualHost{{
					Name:    g.Name,
					Domains: []string{"*"},
					Routes: []*route.Route{{
						Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: ""}},
						Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cn}}},
					}},
				}},
			}},
			HttpFilters: []*hcm.HttpFilter{routerFilter()},
		}
		res.Listeners = append(res.Listeners, &listener.Listener{
			Name:        g.Name,
			ApiListener: &listener.ApiListener{ApiListener: mustAny(m)},
		})
		res.Clusters = append(res.Clusters, edsCluster(cn, config.DefaultConnectTimeout))
		cla, err := loadAssignment(cn, eps)
		if err != nil {
			return nil, fmt.Errorf("xds.grpc_clients[%d]: %w", i, err)
		}
		res.Endpoints = append(res.Endpoints, cla)
	}
	return res, nil
}
