package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshgate/meshgate/xds/model"
)

// xdsClusterName is the static cluster Envoy reaches MeshGate's ADS on.
const xdsClusterName = "meshgate_xds"

// BootstrapOptions tune Bootstrap.
type BootstrapOptions struct {
	// Delta selects incremental xDS (DELTA_GRPC) instead of
	// state-of-the-world (GRPC).
	Delta bool
	// XDSAddress overrides the control plane's address (host:port or
	// unix:/path).
	XDSAddress string
	// AdminAddress overrides the node's admin address.
	AdminAddress string
	// XDSTLS overrides the node's XDSClientTLS: the client certificate,
	// key and CA (paths as Envoy sees them) Envoy uses to reach the
	// control plane over mutual TLS; ServerName, when set, is sent as SNI
	// and required as a DNS SAN of the control plane's certificate.
	XDSTLS *model.ClientTLS
}

// xdsConnectTimeout is the connect timeout of the bootstrap's xds cluster.
const xdsConnectTimeout = 2 * time.Second

// Bootstrap renders the Envoy bootstrap (YAML) for node: node id and
// cluster, admin address, one static cluster reaching the control plane
// (HTTP/2, TCP or unix socket), and LDS/CDS through ADS (routes,
// endpoints and secrets follow from them, also over ADS).
func Bootstrap(m *model.XDS, node string, o BootstrapOptions) ([]byte, error) {
	if m == nil {
		return nil, ErrNoXDS
	}
	n := m.Node(node)
	if n == nil {
		return nil, fmt.Errorf("xds: no Envoy node %q", node)
	}
	cp, admin := m.Server.Address, n.Admin
	var err error
	if o.XDSAddress != "" {
		if cp, err = model.ParseAddress(o.XDSAddress); err != nil {
			return nil, fmt.Errorf("xds: xds address: %w", err)
		}
	}
	if o.AdminAddress != "" {
		if admin, err = model.ParseAddress(o.AdminAddress); err != nil {
			return nil, fmt.Errorf("xds: admin address: %w", err)
		}
	}
	if admin.Unix != "" {
		return nil, fmt.Errorf("xds: admin address %s: must be host:port", admin)
	}
	var transport *core.TransportSocket
	clientTLS := n.XDSClientTLS
	if o.XDSTLS != nil {
		clientTLS = o.XDSTLS
	}
	switch {
	case clientTLS != nil:
		if clientTLS.CertFile == "" || clientTLS.KeyFile == "" || clientTLS.CAFile == "" {
			return nil, fmt.Errorf("xds: node %q: the xds client TLS needs cert_file, key_file and ca_file", node)
		}
		transport = xdsTransportSocket(clientTLS)
	case m.Server.TLS != nil:
		return nil, fmt.Errorf("xds: node %q: the control plane requires mutual TLS: set xds.envoy[].xds_tls or the -xds-cert/-xds-key/-xds-ca flags", node)
	}
	apiType := core.ApiConfigSource_GRPC
	if o.Delta {
		apiType = core.ApiConfigSource_DELTA_GRPC
	}
	b := &bootstrap.Bootstrap{
		Node:  &core.Node{Id: n.ID, Cluster: n.Cluster},
		Admin: &bootstrap.Admin{Address: socketAddress(admin)},
		DynamicResources: &bootstrap.Bootstrap_DynamicResources{
			AdsConfig: &core.ApiConfigSource{
				ApiType:                   apiType,
				TransportApiVersion:       core.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*core.GrpcService{{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: xdsClusterName},
				}}},
			},
			CdsConfig: adsSource(),
			LdsConfig: adsSource(),
		},
		StaticResources: &bootstrap.Bootstrap_StaticResources{Clusters: []*cluster.Cluster{{
			Name:                          xdsClusterName,
			ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
			ConnectTimeout:                durationpb.New(xdsConnectTimeout),
			TypedExtensionProtocolOptions: http2Options(),
			TransportSocket:               transport,
			LoadAssignment: &endpoint.ClusterLoadAssignment{
				ClusterName: xdsClusterName,
				Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(cp)}},
				}}}},
			},
		}}},
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	return jsonToYAML(js)
}

// xdsTransportSocket is the UpstreamTlsContext of the xds cluster: the
// node's client certificate and the CA verifying the control plane, read
// by Envoy from files (Envoy watches them).
func xdsTransportSocket(t *model.ClientTLS) *core.TransportSocket {
	file := func(p string) *core.DataSource {
		return &core.DataSource{Specifier: &core.DataSource_Filename{Filename: p}}
	}
	vc := &tlsv3.CertificateValidationContext{TrustedCa: file(t.CAFile)}
	if t.ServerName != "" {
		vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.ServerName}},
		}}
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: t.ServerName,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:         []string{"h2"},
			TlsCertificates:       []*tlsv3.TlsCertificate{{CertificateChain: file(t.CertFile), PrivateKey: file(t.KeyFile)}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
		},
	}
	return &core.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

func jsonToYAML(js []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}

// GRPCBootstrap renders the grpc-go xDS bootstrap JSON (for
// GRPC_XDS_BOOTSTRAP_CONFIG) that points a proxyless client with node id
// nodeID at this control plane's address (host:port or unix:/path). With
// tls, the channel uses grpc-go's "tls" channel credentials (client
// certificate, key and CA files); without, plaintext ("insecure"), which
// the control plane accepts only on a unix socket or with xds.insecure.
func GRPCBootstrap(xdsAddress, nodeID string, tls *model.ClientTLS) ([]byte, error) {
	uri := xdsAddress
	if path, ok := strings.CutPrefix(xdsAddress, "unix:"); ok {
		uri = "unix://" + path
	}
	creds := map[string]any{"type": "insecure"}
	if tls != nil {
		if tls.CertFile == "" || tls.KeyFile == "" || tls.CAFile == "" {
			return nil, fmt.Errorf("xds: grpc bootstrap: TLS needs cert_file, key_file and ca_file")
		}
		creds = map[string]any{"type": "tls", "config": map[string]any{
			"certificate_file":    tls.CertFile,
			"private_key_file":    tls.KeyFile,
			"ca_certificate_file": tls.CAFile,
		}}
	}
	return json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      uri,
			"channel_creds":   []any{creds},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": nodeID, "cluster": "meshgate-proxyless"},
	})
}
