package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshgate/meshgate/meshgate/config"
)

// xdsClusterName is the static cluster Envoy reaches MeshGate's ADS on.
const xdsClusterName = "meshgate_xds"

// BootstrapOptions tune Bootstrap.
type BootstrapOptions struct {
	// Delta selects incremental xDS (DELTA_GRPC) instead of
	// state-of-the-world (GRPC).
	Delta bool
	// XDSAddress overrides xds.address (host:port or unix:/path).
	XDSAddress string
	// AdminAddress overrides the node's admin_address.
	AdminAddress string
}

// Bootstrap renders the Envoy bootstrap (YAML) for node: node id and
// cluster, admin address, one static cluster reaching the control plane
// (HTTP/2, TCP or unix socket), and LDS/CDS through ADS (routes,
// endpoints and secrets follow from them, also over ADS).
func Bootstrap(cfg *config.Config, node string, o BootstrapOptions) ([]byte, error) {
	if cfg == nil || cfg.XDS == nil {
		return nil, ErrNoXDS
	}
	var n *config.EnvoyNode
	for i := range cfg.XDS.Envoy {
		if cfg.XDS.Envoy[i].Node == node {
			n = &cfg.XDS.Envoy[i]
		}
	}
	if n == nil {
		return nil, fmt.Errorf("xds: no xds.envoy entry with node %q", node)
	}
	xdsAddr := cfg.XDS.Address
	if o.XDSAddress != "" {
		xdsAddr = o.XDSAddress
	}
	adminAddr := n.AdminAddress
	if o.AdminAddress != "" {
		adminAddr = o.AdminAddress
	}
	admin, err := socketAddress(adminAddr)
	if err != nil {
		return nil, fmt.Errorf("xds: admin_address: %w", err)
	}
	var cp *core.Address
	if path, ok := strings.CutPrefix(xdsAddr, "unix:"); ok {
		cp = &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: path}}}
	} else if cp, err = socketAddress(xdsAddr); err != nil {
		return nil, fmt.Errorf("xds: address: %w", err)
	}
	apiType := core.ApiConfigSource_GRPC
	if o.Delta {
		apiType = core.ApiConfigSource_DELTA_GRPC
	}
	b := &bootstrap.Bootstrap{
		Node:  &core.Node{Id: n.Node, Cluster: n.Cluster},
		Admin: &bootstrap.Admin{Address: admin},
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
			ConnectTimeout:                durationpb.New(config.DefaultConnectTimeout),
			TypedExtensionProtocolOptions: http2Options(),
			LoadAssignment: &endpoint.ClusterLoadAssignment{
				ClusterName: xdsClusterName,
				Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: cp}},
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
// nodeID at this control plane's address (host:port or unix:/path).
func GRPCBootstrap(xdsAddress, nodeID string) ([]byte, error) {
	uri := xdsAddress
	if path, ok := strings.CutPrefix(xdsAddress, "unix:"); ok {
		uri = "unix://" + path
	}
	return json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      uri,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": nodeID, "cluster": "meshgate-proxyless"},
	})
}
