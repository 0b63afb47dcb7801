package bench

import (
	"fmt"
	"strings"
)

// EnvoyTLS is one side of an mTLS hop: this Envoy's certificate, the CA
// that verifies the peer, and the peer's expected DNS SAN (upstream only).
type EnvoyTLS struct {
	CertFile, KeyFile, CAFile string
	// PeerSAN, when set on an upstream hop, is the DNS SAN the server
	// certificate must carry; it is also sent as SNI.
	PeerSAN string
}

// EnvoySpec describes a static Envoy bootstrap with one TCP listener
// proxying (tcp_proxy) to one upstream endpoint.
type EnvoySpec struct {
	Name         string // node id and stat prefix
	AdminPort    int    // admin on 127.0.0.1 (for /ready); 0 = any
	ListenPort   int    // listener on 127.0.0.1
	UpstreamAddr string // host:port
	// DownstreamTLS, when set, makes the listener terminate mTLS
	// (client certificate required).
	DownstreamTLS *EnvoyTLS
	// UpstreamTLS, when set, makes the cluster originate mTLS.
	UpstreamTLS *EnvoyTLS
	// WasmFile, when set, puts the proxy-wasm network filter from this
	// file before tcp_proxy, with WasmRootID and WasmConfig (a JSON
	// string passed as the plugin configuration).
	WasmFile   string
	WasmRootID string
	WasmConfig string
	// HTTP, when set, makes the listener an L7 HTTP proxy (HCM + router,
	// optional JSON transcoder) to an HTTP/2 upstream instead of
	// tcp_proxy; TLS and wasm are then not supported.
	HTTP *EnvoyHTTP
}

func yamlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func tlsCertsYAML(b *strings.Builder, indent string, t *EnvoyTLS) {
	fmt.Fprintf(b, "%scommon_tls_context:\n", indent)
	fmt.Fprintf(b, "%s  tls_params: {tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3}\n", indent)
	fmt.Fprintf(b, "%s  tls_certificates:\n", indent)
	fmt.Fprintf(b, "%s  - certificate_chain: {filename: %s}\n", indent, yamlQuote(t.CertFile))
	fmt.Fprintf(b, "%s    private_key: {filename: %s}\n", indent, yamlQuote(t.KeyFile))
	fmt.Fprintf(b, "%s  validation_context:\n", indent)
	fmt.Fprintf(b, "%s    trusted_ca: {filename: %s}\n", indent, yamlQuote(t.CAFile))
	if t.PeerSAN != "" {
		fmt.Fprintf(b, "%s    match_typed_subject_alt_names:\n", indent)
		fmt.Fprintf(b, "%s    - san_type: DNS\n", indent)
		fmt.Fprintf(b, "%s      matcher: {exact: %s}\n", indent, yamlQuote(t.PeerSAN))
	}
}

// Bootstrap renders the Envoy v3 bootstrap YAML.
func (s EnvoySpec) Bootstrap() (string, error) {
	host, port, ok := strings.Cut(s.UpstreamAddr, ":")
	if !ok || s.ListenPort == 0 {
		return "", fmt.Errorf("bench: envoy %s: incomplete spec (upstream %q)", s.Name, s.UpstreamAddr)
	}
	if s.HTTP != nil {
		if s.DownstreamTLS != nil || s.UpstreamTLS != nil || s.WasmFile != "" {
			return "", fmt.Errorf("bench: envoy %s: HTTP mode supports neither TLS nor wasm", s.Name)
		}
		return s.httpBootstrap(host, port), nil
	}
	var b strings.Builder
	s.bootstrapHead(&b)
	b.WriteString("    filter_chains:\n    - filters:\n")
	if s.WasmFile != "" {
		b.WriteString("      - name: envoy.filters.network.wasm\n")
		b.WriteString("        typed_config:\n")
		b.WriteString("          \"@type\": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm\n")
		b.WriteString("          config:\n")
		b.WriteString("            name: mgp\n")
		fmt.Fprintf(&b, "            root_id: %s\n", yamlQuote(s.WasmRootID))
		b.WriteString("            configuration:\n")
		b.WriteString("              \"@type\": type.googleapis.com/google.protobuf.StringValue\n")
		fmt.Fprintf(&b, "              value: %s\n", yamlQuote(s.WasmConfig))
		b.WriteString("            vm_config:\n")
		b.WriteString("              runtime: envoy.wasm.runtime.v8\n")
		fmt.Fprintf(&b, "              code: {local: {filename: %s}}\n", yamlQuote(s.WasmFile))
	}
	b.WriteString("      - name: envoy.filters.network.tcp_proxy\n")
	b.WriteString("        typed_config:\n")
	b.WriteString("          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n")
	fmt.Fprintf(&b, "          stat_prefix: %s\n", yamlQuote(s.Name))
	b.WriteString("          cluster: upstream\n")
	if t := s.DownstreamTLS; t != nil {
		b.WriteString("      transport_socket:\n")
		b.WriteString("        name: envoy.transport_sockets.tls\n")
		b.WriteString("        typed_config:\n")
		b.WriteString("          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n")
		b.WriteString("          require_client_certificate: true\n")
		tlsCertsYAML(&b, "          ", t)
	}
	b.WriteString("  clusters:\n")
	b.WriteString("  - name: upstream\n")
	b.WriteString("    connect_timeout: 2s\n")
	b.WriteString(circuitBreakersYAML)
	b.WriteString("    type: STATIC\n")
	b.WriteString("    load_assignment:\n")
	b.WriteString("      cluster_name: upstream\n")
	b.WriteString("      endpoints:\n")
	b.WriteString("      - lb_endpoints:\n")
	fmt.Fprintf(&b, "        - endpoint: {address: {socket_address: {address: %s, port_value: %s}}}\n", yamlQuote(host), port)
	if t := s.UpstreamTLS; t != nil {
		b.WriteString("    transport_socket:\n")
		b.WriteString("      name: envoy.transport_sockets.tls\n")
		b.WriteString("      typed_config:\n")
		b.WriteString("        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n")
		if t.PeerSAN != "" {
			fmt.Fprintf(&b, "        sni: %s\n", yamlQuote(t.PeerSAN))
		}
		tlsCertsYAML(&b, "        ", t)
	}
	return b.String(), nil
}

// circuitBreakersYAML lifts the upstream cluster's circuit breakers as
// Istio does for every sidecar cluster (4294967295 each): Envoy's defaults
// (1024 connections, pending and active requests) would make tcp_proxy
// close every downstream connection past the 1024th (upstream_cx_overflow),
// which is what the idle mode's 2000 connections ran into.
const circuitBreakersYAML = `    circuit_breakers:
      thresholds:
      - {max_connections: 4294967295, max_pending_requests: 4294967295, max_requests: 4294967295, max_retries: 4294967295}
`

// bootstrapHead writes what every bootstrap of s starts with: node,
// admin, and the head of its one listener.
func (s EnvoySpec) bootstrapHead(b *strings.Builder) {
	fmt.Fprintf(b, "node: {id: %s, cluster: meshgate-bench}\n", yamlQuote(s.Name))
	fmt.Fprintf(b, "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: %d}}\n", s.AdminPort)
	b.WriteString("static_resources:\n  listeners:\n")
	fmt.Fprintf(b, "  - name: %s\n", yamlQuote(s.Name+"_in"))
	fmt.Fprintf(b, "    address: {socket_address: {address: 127.0.0.1, port_value: %d}}\n", s.ListenPort)
}
