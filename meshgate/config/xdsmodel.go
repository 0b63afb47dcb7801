package config

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meshgate/meshgate/xds/model"
)

// XDSModel builds the xDS control plane's model (package xds/model) from
// a config on which ApplyDefaults and Validate ran (Load and Parse do
// both): the one place where the xds section's YAML shapes (either/or
// route_to, relative paths, defaults) become the resolved values package
// xds translates. It returns nil, nil when there is no xds section. The
// model shares nothing with c. Errors name the YAML field; on a valid
// config there are none.
func (c *Config) XDSModel() (*model.XDS, error) {
	x := c.XDS
	if x == nil {
		return nil, nil
	}
	b := &xdsBuilder{c: c}
	m := &model.XDS{Server: model.Server{
		Address:    b.addr("xds.address", x.Address),
		Insecure:   x.Insecure,
		SocketMode: x.SocketFileMode(),
		CertPoll:   x.CertPoll,

		MaxConnections:        x.Limits.MaxConnections,
		MaxStreams:            x.Limits.MaxStreams,
		MaxStreamsPerIdentity: x.Limits.MaxStreamsPerIdentity,
	}}
	if t := x.TLS; t != nil {
		m.Server.TLS = &model.ServerTLS{CertFile: c.Path(t.CertFile), KeyFile: c.Path(t.KeyFile), CAFile: c.Path(t.CAFile)}
	}
	for i := range x.Envoy {
		m.Nodes = append(m.Nodes, b.node(fmt.Sprintf("xds.envoy[%d]", i), &x.Envoy[i]))
	}
	for _, p := range x.Proxyless {
		m.Proxyless.Nodes = append(m.Proxyless.Nodes, model.ProxylessNode{ID: p.Node, Identities: append([]string(nil), p.Identities...)})
	}
	for i, g := range x.GRPCClients {
		f := fmt.Sprintf("xds.grpc_clients[%d]", i)
		svc := model.Service{Name: g.Name, Cluster: "grpc/" + g.Name, ConnectTimeout: DefaultConnectTimeout}
		if g.RouteTo.MeshgateListener != "" {
			svc.Endpoints = []model.Address{b.meshgateAddr(f+".route_to.meshgate_listener", g.RouteTo.MeshgateListener)}
		} else {
			for k, ep := range g.Endpoints {
				svc.Endpoints = append(svc.Endpoints, b.addr(fmt.Sprintf("%s.endpoints[%d]", f, k), ep))
			}
		}
		m.Proxyless.Services = append(m.Proxyless.Services, svc)
	}
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	return m, nil
}

type xdsBuilder struct {
	c    *Config
	errs []error
}

func (b *xdsBuilder) fail(field, format string, a ...any) {
	b.errs = append(b.errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...)))
}

func (b *xdsBuilder) addr(field, s string) model.Address {
	a, err := model.ParseAddress(s)
	if err != nil {
		b.fail(field, "%v", err)
	}
	return a
}

func (b *xdsBuilder) meshgateAddr(field, name string) model.Address {
	ml := b.c.MeshgateListener(name)
	if ml == nil {
		b.fail(field, "unknown listener %q", name)
		return model.Address{}
	}
	return b.addr(field, ml.Address)
}

func (b *xdsBuilder) node(f string, n *EnvoyNode) model.Node {
	out := model.Node{
		ID:         n.Node,
		Cluster:    n.Cluster,
		Admin:      b.addr(f+".admin_address", n.AdminAddress),
		Identities: append([]string(nil), n.Identities...),
	}
	if t := n.XDSTLS; t != nil {
		// Paths as Envoy sees them: verbatim, not resolved.
		out.XDSClientTLS = &model.ClientTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile, ServerName: t.ServerName}
	}
	have := map[string]bool{}
	for j := range n.Clusters {
		cl := &n.Clusters[j]
		cf := fmt.Sprintf("%s.clusters[%d]", f, j)
		mc := model.Cluster{Name: cl.Name, Protocol: envoyProtocol(cl.Protocol), ConnectTimeout: cl.ConnectTimeout, LB: model.RoundRobin}
		for k, ep := range cl.Endpoints {
			mc.Endpoints = append(mc.Endpoints, b.addr(fmt.Sprintf("%s.endpoints[%d]", cf, k), ep))
		}
		if cl.TLS != nil {
			mc.TLS = &model.UpstreamTLS{TLS: b.tls("cluster/"+cl.Name, cl.TLS), SNI: cl.TLS.ServerName}
		}
		have[cl.Name] = true
		out.Clusters = append(out.Clusters, mc)
	}
	// target resolves route_to to a cluster name, adding the cluster of a
	// MeshGate listener on first use.
	target := func(field string, r RouteTo, p model.Protocol) string {
		if r.Cluster != "" {
			return r.Cluster
		}
		name := "meshgate/" + r.MeshgateListener // the cluster reaching a MeshGate listener
		if !have[name] {
			have[name] = true
			out.Clusters = append(out.Clusters, model.Cluster{
				Name: name, Protocol: p, ConnectTimeout: DefaultConnectTimeout, LB: model.RoundRobin,
				Endpoints: []model.Address{b.meshgateAddr(field+".meshgate_listener", r.MeshgateListener)},
			})
		}
		return name
	}
	for j := range n.Listeners {
		l := &n.Listeners[j]
		lf := fmt.Sprintf("%s.listeners[%d]", f, j)
		ml := model.Listener{Name: l.Name, Address: b.addr(lf+".address", l.Address), Protocol: envoyProtocol(l.Protocol)}
		if l.Wasm != nil {
			js, err := wasmConfigJSON(l.Wasm.Config)
			if err != nil {
				b.fail(lf+".wasm.config", "%v", err)
			}
			ml.Wasm = &model.Wasm{Name: "mgp/" + l.Name, RootID: l.Wasm.RootID, File: b.c.Path(l.Wasm.File), Config: js}
		}
		switch ml.Protocol {
		case model.GRPC:
			for k, r := range l.Routes {
				ml.Routes = append(ml.Routes, model.Route{PathPrefix: r.Prefix, Cluster: target(fmt.Sprintf("%s.routes[%d].route_to", lf, k), r.RouteTo, model.GRPC)})
			}
			ml.Routes = append(ml.Routes, model.Route{PathPrefix: "/", Cluster: target(lf+".route_to", l.RouteTo, model.GRPC)})
		default:
			ml.Cluster = target(lf+".route_to", l.RouteTo, model.TCP)
		}
		if l.TLS != nil {
			ml.TLS = &model.DownstreamTLS{TLS: b.tls("listener/"+l.Name, l.TLS), RequireClientCertificate: l.TLS.CAFile != ""}
		}
		out.Listeners = append(out.Listeners, ml)
	}
	return out
}

// tls resolves a TLS block into SDS secrets named "<owner>/cert" and
// "<owner>/ca".
func (b *xdsBuilder) tls(owner string, t *TLS) model.TLS {
	var out model.TLS
	if t.CertFile != "" {
		out.Certificate = &model.CertificateSecret{Name: owner + "/cert", CertFile: b.c.Path(t.CertFile), KeyFile: b.c.Path(t.KeyFile)}
	}
	if t.CAFile != "" {
		out.Validation = &model.ValidationSecret{Name: owner + "/ca", CAFile: b.c.Path(t.CAFile)}
		out.MatchDNSSAN = t.ServerName
	}
	return out
}

func envoyProtocol(p string) model.Protocol {
	if p == EnvoyGRPC {
		return model.GRPC
	}
	return model.TCP
}

// wasmConfigJSON is the JSON handed to the wasm plugin ("{}" when unset).
func wasmConfigJSON(conf map[string]any) (string, error) {
	if conf == nil {
		conf = map[string]any{}
	}
	js, err := json.Marshal(conf)
	if err != nil {
		return "", fmt.Errorf("not representable as JSON: %w", err)
	}
	return string(js), nil
}

// checkWasmConfig reports a wasm.config that cannot become the plugin's
// JSON (a map with non-string keys, .nan, ...).
func checkWasmConfig(e *errs, field string, conf map[string]any) {
	if _, err := wasmConfigJSON(conf); err != nil {
		e.add(field, "%v", err)
	}
}
