package xds

import (
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

	"github.com/meshgate/meshgate/xds/model"
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

// Files maps a file path to its content: the certificate files a model
// references (see CertFiles). The translator reads nothing itself.
type Files map[string][]byte

// secretTLS lists every TLS context of m's nodes whose files become SDS
// secrets.
func secretTLS(m *model.XDS) []*model.TLS {
	if m == nil {
		return nil
	}
	var out []*model.TLS
	for i := range m.Nodes {
		n := &m.Nodes[i]
		for j := range n.Clusters {
			if t := n.Clusters[j].TLS; t != nil {
				out = append(out, &t.TLS)
			}
		}
		for j := range n.Listeners {
			if t := n.Listeners[j].TLS; t != nil {
				out = append(out, &t.TLS)
			}
		}
	}
	return out
}

// CertFiles lists the certificate files m's SDS secrets are read from,
// sorted and without duplicates.
func CertFiles(m *model.XDS) []string {
	set := map[string]bool{}
	for _, t := range secretTLS(m) {
		if c := t.Certificate; c != nil {
			set[c.CertFile], set[c.KeyFile] = true, true
		}
		if v := t.Validation; v != nil {
			set[v.CAFile] = true
		}
	}
	delete(set, "")
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Translate turns a model into the resources of every node: one entry
// per Envoy node, plus ProxylessNode when there are proxyless services.
// It is a pure function of m and files.
func Translate(m *model.XDS, files Files) (map[string]*Resources, error) {
	if m == nil {
		return map[string]*Resources{}, nil
	}
	out := map[string]*Resources{}
	var errs []error
	for i := range m.Nodes {
		n := &m.Nodes[i]
		r, err := translateNode(n, files)
		if err != nil {
			errs = append(errs, fmt.Errorf("xds: node %s: %w", n.ID, err))
			continue
		}
		out[n.ID] = r
	}
	if len(m.Proxyless.Services) > 0 {
		out[ProxylessNode] = translateProxyless(m.Proxyless.Services)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// nodeBuilder accumulates one node's resources, deduplicating secrets by
// name.
type nodeBuilder struct {
	files   Files
	res     *Resources
	secrets map[string]bool
}

func translateNode(n *model.Node, files Files) (*Resources, error) {
	b := &nodeBuilder{files: files, res: &Resources{}, secrets: map[string]bool{}}
	for i := range n.Clusters {
		if err := b.addCluster(&n.Clusters[i]); err != nil {
			return nil, err
		}
	}
	for i := range n.Listeners {
		l := &n.Listeners[i]
		if err := checkClusters(l, b.res.Clusters); err != nil {
			return nil, err
		}
		if err := b.addListener(l); err != nil {
			return nil, err
		}
	}
	return b.res, nil
}

// checkClusters refuses a listener routing to a cluster the node does not
// have (Envoy would accept it and answer 503 / reset connections).
func checkClusters(l *model.Listener, clusters []types.Resource) error {
	have := names(clusters)
	refs := []string{l.Cluster}
	if l.Protocol == model.GRPC {
		refs = refs[:0]
		for _, r := range l.Routes {
			refs = append(refs, r.Cluster)
		}
	}
	for _, c := range refs {
		if !have[c] {
			return fmt.Errorf("listener %s: unknown cluster %q", l.Name, c)
		}
	}
	return nil
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

// socketAddress is a as an Envoy address: a socket address, or a pipe
// for a unix socket.
func socketAddress(a model.Address) *core.Address {
	if a.Unix != "" {
		return &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: a.Unix}}}
	}
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       a.Host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: a.Port},
	}}}
}

func loadAssignment(name string, eps []model.Address) *endpoint.ClusterLoadAssignment {
	lb := make([]*endpoint.LbEndpoint, 0, len(eps))
	for _, ep := range eps {
		lb = append(lb, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(ep)}}})
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
	}
}

func lbPolicy(p model.LBPolicy) (cluster.Cluster_LbPolicy, error) {
	switch p {
	case model.RoundRobin:
		return cluster.Cluster_ROUND_ROBIN, nil
	}
	return 0, fmt.Errorf("unknown load-balancing policy %q", p)
}

func edsCluster(name string, timeout time.Duration, lb cluster.Cluster_LbPolicy) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:       durationpb.New(timeout),
		LbPolicy:             lb,
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

func (b *nodeBuilder) addCluster(c *model.Cluster) error {
	lb, err := lbPolicy(c.LB)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	cl := edsCluster(c.Name, c.ConnectTimeout, lb)
	switch c.Protocol {
	case model.GRPC:
		cl.TypedExtensionProtocolOptions = http2Options()
	case model.TCP:
	default:
		return fmt.Errorf("cluster %s: unknown protocol %q", c.Name, c.Protocol)
	}
	if c.TLS != nil {
		if cl.TransportSocket, err = b.tlsSocket(&c.TLS.TLS, c.Protocol, func(ctx *tlsv3.CommonTlsContext) proto.Message {
			return &tlsv3.UpstreamTlsContext{CommonTlsContext: ctx, Sni: c.TLS.SNI}
		}); err != nil {
			return err
		}
	}
	b.res.Clusters = append(b.res.Clusters, cl)
	b.res.Endpoints = append(b.res.Endpoints, loadAssignment(c.Name, c.Endpoints))
	return nil
}

func (b *nodeBuilder) file(p string) ([]byte, error) {
	data, ok := b.files[p]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrMissingFile, p)
	}
	return data, nil
}

// tlsSocket is the TLS transport socket of a cluster or listener of
// protocol p: side wraps the common context (commonTLS) in the
// upstream's or downstream's own.
func (b *nodeBuilder) tlsSocket(t *model.TLS, p model.Protocol, side func(*tlsv3.CommonTlsContext) proto.Message) (*core.TransportSocket, error) {
	ctx, err := b.commonTLS(t, p == model.GRPC)
	if err != nil {
		return nil, err
	}
	return &core.TransportSocket{Name: tlsSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(side(ctx))}}, nil
}

// addSecret adds secret name, made by mk from the contents of files (in
// order), to the node's resources unless it is there already: a secret
// several listeners or clusters name is read and sent once.
func (b *nodeBuilder) addSecret(name string, mk func(data [][]byte) *tlsv3.Secret, files ...string) error {
	if b.secrets[name] {
		return nil
	}
	data := make([][]byte, len(files))
	for i, f := range files {
		var err error
		if data[i], err = b.file(f); err != nil {
			return err
		}
	}
	sec := mk(data)
	sec.Name = name
	b.secrets[name] = true
	b.res.Secrets = append(b.res.Secrets, sec)
	return nil
}

// inline is an SDS data source holding b itself.
func inline(b []byte) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b}}
}

// commonTLS builds a TLS context whose certificate and trusted CA come
// from SDS secrets (pushed over ADS), so rotating the files only pushes
// new secrets: listeners and clusters stay as they are and established
// connections keep going.
func (b *nodeBuilder) commonTLS(t *model.TLS, h2 bool) (*tlsv3.CommonTlsContext, error) {
	ctx := &tlsv3.CommonTlsContext{
		TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
	}
	if h2 {
		ctx.AlpnProtocols = []string{"h2"}
	}
	if c := t.Certificate; c != nil {
		if err := b.addSecret(c.Name, func(d [][]byte) *tlsv3.Secret {
			return &tlsv3.Secret{Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inline(d[0]), PrivateKey: inline(d[1]),
			}}}
		}, c.CertFile, c.KeyFile); err != nil {
			return nil, err
		}
		ctx.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: c.Name, SdsConfig: adsSource()}}
	}
	if v := t.Validation; v != nil {
		if err := b.addSecret(v.Name, func(d [][]byte) *tlsv3.Secret {
			return &tlsv3.Secret{Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(d[0])}}}
		}, v.CAFile); err != nil {
			return nil, err
		}
		def := &tlsv3.CertificateValidationContext{}
		if t.MatchDNSSAN != "" {
			def.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: t.MatchDNSSAN}},
			}}
		}
		ctx.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         def,
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: v.Name, SdsConfig: adsSource()},
		}}
	}
	return ctx, nil
}

func (b *nodeBuilder) addListener(l *model.Listener) error {
	chain := &listener.FilterChain{}
	switch l.Protocol {
	case model.TCP:
		if l.Wasm != nil {
			chain.Filters = append(chain.Filters, wasmFilter(l.Wasm))
		}
		chain.Filters = append(chain.Filters, &listener.Filter{Name: tcpProxyFilterName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
			StatPrefix:       l.Name,
			ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: l.Cluster},
		})}})
	case model.GRPC:
		if l.Wasm != nil {
			return fmt.Errorf("listener %s: the wasm network filter needs a tcp listener", l.Name)
		}
		rc := routeConfig(l.Name, l.Routes)
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
		var err error
		if chain.TransportSocket, err = b.tlsSocket(&l.TLS.TLS, l.Protocol, func(ctx *tlsv3.CommonTlsContext) proto.Message {
			down := &tlsv3.DownstreamTlsContext{CommonTlsContext: ctx}
			if l.TLS.RequireClientCertificate {
				down.RequireClientCertificate = wrapperspb.Bool(true)
			}
			return down
		}); err != nil {
			return err
		}
	}
	b.res.Listeners = append(b.res.Listeners, &listener.Listener{
		Name:         l.Name,
		Address:      socketAddress(l.Address),
		FilterChains: []*listener.FilterChain{chain},
	})
	return nil
}

func routerFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: routerFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})}}
}

// routeConfig is the route configuration of a gRPC listener, named like
// it: one virtual host, the routes in order.
func routeConfig(name string, routes []model.Route) *route.RouteConfiguration {
	vh := &route.VirtualHost{Name: name, Domains: []string{"*"}}
	for _, r := range routes {
		vh.Routes = append(vh.Routes, &route.Route{
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: r.PathPrefix}},
			Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_Cluster{Cluster: r.Cluster},
				// gRPC deadlines govern; no Envoy default 15s cut-off.
				Timeout: durationpb.New(0),
			}},
		})
	}
	return &route.RouteConfiguration{Name: name, VirtualHosts: []*route.VirtualHost{vh}}
}

func wasmFilter(w *model.Wasm) *listener.Filter {
	f := &wasmnet.Wasm{Config: &wasmv3.PluginConfig{
		Name:   w.Name,
		RootId: w.RootID,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId:    "mgp",
			Runtime: wasmRuntime,
			Code: &core.AsyncDataSource{Specifier: &core.AsyncDataSource_Local{Local: &core.DataSource{
				Specifier: &core.DataSource_Filename{Filename: w.File},
			}}},
		}},
		Configuration: mustAny(wrapperspb.String(w.Config)),
	}}
	return &listener.Filter{Name: wasmFilterName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(f)}}
}

// translateProxyless builds the shapes grpc-go's xDS client expects: a
// Listener named like the target with an ApiListener (HCM with an inline
// RouteConfiguration and the router filter), an EDS Cluster and its
// ClusterLoadAssignment.
func translateProxyless(svcs []model.Service) *Resources {
	res := &Resources{}
	for _, g := range svcs {
		m := &hcm.HttpConnectionManager{
			RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
				Name: g.Name,
				VirtualHosts: []*route.VirtualHost{{
					Name:    g.Name,
					Domains: []string{"*"},
					Routes: []*route.Route{{
						Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: ""}},
						Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: g.Cluster}}},
					}},
				}},
			}},
			HttpFilters: []*hcm.HttpFilter{routerFilter()},
		}
		res.Listeners = append(res.Listeners, &listener.Listener{
			Name:        g.Name,
			ApiListener: &listener.ApiListener{ApiListener: mustAny(m)},
		})
		res.Clusters = append(res.Clusters, edsCluster(g.Cluster, g.ConnectTimeout, cluster.Cluster_ROUND_ROBIN))
		res.Endpoints = append(res.Endpoints, loadAssignment(g.Cluster, g.Endpoints))
	}
	return res
}
