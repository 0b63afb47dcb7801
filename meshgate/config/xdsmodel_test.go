package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/xds/model"
)

const xdsModelYAML = `
listeners:
- {name: grpc_in, kind: grpc, address: 127.0.0.1:7201, routes: [{method: "/l.E/*", cmd: 1, upstream: legacy}]}
- {name: private_in, kind: private, address: localhost:7200, routes: [{cmd: 1, method: /d.E/E, upstream: demo}]}
upstreams:
- {name: legacy, protocol: private, endpoints: [127.0.0.1:7100]}
- {name: demo, protocol: grpc, endpoints: [127.0.0.1:7101]}
xds:
  address: 127.0.0.1:18000
  tls: {cert_file: xds.pem, key_file: xds-key.pem, ca_file: ca.pem}
  envoy:
  - node: idc
    identities: ["dns:IDC.example"]
    xds_tls: {cert_file: certs/idc.pem, key_file: certs/idc-key.pem, ca_file: certs/ca.pem, server_name: xds}
    listeners:
    - name: in
      address: 127.0.0.1:10000
      protocol: private
      wasm: {file: mgp.wasm, config: {allow_cmds: [1]}}
      route_to: {meshgate_listener: private_in}
    - name: g
      address: 127.0.0.1:10001
      protocol: grpc
      tls: {cert_file: l.pem, key_file: l-key.pem, ca_file: ca.pem}
      routes: [{prefix: /l.E/, route_to: {meshgate_listener: grpc_in}}]
      route_to: {cluster: cloud}
    clusters:
    - {name: cloud, protocol: grpc, endpoints: [10.0.0.6:10101], tls: {ca_file: /abs/ca.pem, server_name: cloud}}
  proxyless_nodes: [{node: legacy-client}]
  grpc_clients:
  - {name: bridge, route_to: {meshgate_listener: grpc_in}}
`

func buildXDSModel(t *testing.T, y string) (*Config, *model.XDS) {
	t.Helper()
	c, err := Parse([]byte(y), "/etc/mg")
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.XDSModel()
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

// TestXDSModelResolved: the model holds resolved values only: defaults
// applied, paths absolute (except the bootstrap's Envoy-side paths),
// route_to turned into cluster names (MeshGate listeners become clusters
// on first use), the "/" default route last, secret names per owner.
func TestXDSModelResolved(t *testing.T) {
	_, m := buildXDSModel(t, xdsModelYAML)
	want := &model.XDS{
		Server: model.Server{
			Address:    model.Address{Host: "127.0.0.1", Port: 18000},
			TLS:        &model.ServerTLS{CertFile: "/etc/mg/xds.pem", KeyFile: "/etc/mg/xds-key.pem", CAFile: "/etc/mg/ca.pem"},
			SocketMode: 0o600,
			CertPoll:   DefaultCertPoll,
		},
		Nodes: []model.Node{{
			ID: "idc", Cluster: DefaultEnvoyCluster,
			Admin:        model.Address{Host: "127.0.0.1", Port: 9902},
			Identities:   []string{"dns:idc.example"},
			XDSClientTLS: &model.ClientTLS{CertFile: "certs/idc.pem", KeyFile: "certs/idc-key.pem", CAFile: "certs/ca.pem", ServerName: "xds"},
			Listeners: []model.Listener{{
				Name: "in", Address: model.Address{Host: "127.0.0.1", Port: 10000}, Protocol: model.TCP,
				Wasm:    &model.Wasm{Name: "mgp/in", File: "/etc/mg/mgp.wasm", Config: `{"allow_cmds":[1]}`},
				Cluster: "meshgate/private_in",
			}, {
				Name: "g", Address: model.Address{Host: "127.0.0.1", Port: 10001}, Protocol: model.GRPC,
				Routes: []model.Route{{PathPrefix: "/l.E/", Cluster: "meshgate/grpc_in"}, {PathPrefix: "/", Cluster: "cloud"}},
				TLS: &model.DownstreamTLS{TLS: model.TLS{
					Certificate: &model.CertificateSecret{Name: "listener/g/cert", CertFile: "/etc/mg/l.pem", KeyFile: "/etc/mg/l-key.pem"},
					Validation:  &model.ValidationSecret{Name: "listener/g/ca", CAFile: "/etc/mg/ca.pem"},
				}, RequireClientCertificate: true},
			}},
			Clusters: []model.Cluster{{
				Name: "cloud", Protocol: model.GRPC, Endpoints: []model.Address{{Host: "10.0.0.6", Port: 10101}},
				ConnectTimeout: 2 * time.Second, LB: model.RoundRobin,
				TLS: &model.UpstreamTLS{TLS: model.TLS{Validation: &model.ValidationSecret{Name: "cluster/cloud/ca", CAFile: "/abs/ca.pem"}, MatchDNSSAN: "cloud"}, SNI: "cloud"},
			}, {
				Name: "meshgate/private_in", Protocol: model.TCP, Endpoints: []model.Address{{Host: "127.0.0.1", Port: 7200}},
				ConnectTimeout: DefaultConnectTimeout, LB: model.RoundRobin,
			}, {
				Name: "meshgate/grpc_in", Protocol: model.GRPC, Endpoints: []model.Address{{Host: "127.0.0.1", Port: 7201}},
				ConnectTimeout: DefaultConnectTimeout, LB: model.RoundRobin,
			}},
		}},
		Proxyless: model.Proxyless{
			Nodes:    []model.ProxylessNode{{ID: "legacy-client", Identities: []string{"dns:legacy-client"}}},
			Services: []model.Service{{Name: "bridge", Cluster: "grpc/bridge", Endpoints: []model.Address{{Host: "127.0.0.1", Port: 7201}}, ConnectTimeout: DefaultConnectTimeout}},
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("model:\n got %+v\nwant %+v", m, want)
	}
}

// TestXDSModelSharesNothing: changing the config after the build leaves
// the model as it was.
func TestXDSModelSharesNothing(t *testing.T) {
	c, m := buildXDSModel(t, xdsModelYAML)
	before := m.Clone()
	n := &c.XDS.Envoy[0]
	n.Identities[0] = "dns:changed"
	n.Clusters[0].Endpoints[0] = "10.9.9.9:1"
	n.XDSTLS.CertFile = "changed"
	n.Listeners[0].Wasm.Config["allow_cmds"] = []any{9}
	c.XDS.Proxyless[0].Identities[0] = "dns:changed"
	c.XDS.TLS.CertFile = "changed"
	if !reflect.DeepEqual(m, before) {
		t.Fatal("changing the config changed the model")
	}
}

func TestXDSModelWithoutXDS(t *testing.T) {
	c, err := Parse([]byte("listeners: []\nupstreams: []\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := c.XDSModel(); m != nil || err != nil {
		t.Fatalf("XDSModel = %v, %v; want nil, nil", m, err)
	}
}

// TestXDSModelErrorsNameFields: a config that skipped validation still
// gets errors naming the YAML field, not a broken model.
func TestXDSModelErrorsNameFields(t *testing.T) {
	c, err := Parse([]byte(xdsModelYAML), "/etc/mg")
	if err != nil {
		t.Fatal(err)
	}
	c.XDS.Envoy[0].Listeners[1].Routes[0].RouteTo.MeshgateListener = "nope"
	c.XDS.GRPCClients[0].RouteTo.MeshgateListener = ""
	c.XDS.GRPCClients[0].Endpoints = []string{"no-port"}
	m, err := c.XDSModel()
	if m != nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("XDSModel = %v, %v", m, err)
	}
	for _, f := range []string{"xds.envoy[0].listeners[1].routes[0].route_to.meshgate_listener:", "xds.grpc_clients[0].endpoints[0]:"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %s: %v", f, err)
		}
	}
}
