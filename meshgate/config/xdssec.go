package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Securing the control plane (see docs/security-xds.md).
//
//	xds:
//	  address: 0.0.0.0:18000
//	  tls: {cert_file: xds.pem, key_file: xds-key.pem, ca_file: ca.pem}  # mTLS, required on TCP
//	  insecure: false            # plaintext TCP: only with a loopback address
//	  socket_mode: "0600"        # unix: socket file mode
//	  envoy:
//	  - node: idc
//	    identities: ["spiffe://cluster.local/ns/x/sa/idc", "dns:idc.example"]  # default [dns:idc]
//	    xds_tls: {cert_file: /certs/idc.pem, key_file: /certs/idc-key.pem, ca_file: /certs/ca.pem}
//	  proxyless_nodes:           # proxyless gRPC clients allowed to fetch grpc_clients
//	  - node: legacy-client
//	    identities: ["dns:legacy-client"]
//
// A client's identity is taken from its verified certificate: every URI
// SAN ("spiffe://…") and every DNS SAN ("dns:NAME"). A stream may claim a
// node id only if one of its identities is listed for that node.

// DefaultSocketMode is the file mode of a unix xds.address socket.
const DefaultSocketMode = "0600"

// ProxylessNode is a proxyless gRPC client allowed to fetch the
// xds.grpc_clients resources.
type ProxylessNode struct {
	Node string `yaml:"node" json:"node"`
	// Identities allowed to claim Node; default ["dns:<node>"].
	Identities []string `yaml:"identities,omitempty" json:"identities,omitempty"`
}

// NodeIdentities is the identity → allowed node ids table of x (after
// defaults): every xds.envoy and xds.proxyless_nodes entry.
func (x *XDS) NodeIdentities() map[string][]string {
	out := map[string][]string{}
	for _, n := range x.Envoy {
		for _, id := range n.Identities {
			out[id] = append(out[id], n.Node)
		}
	}
	for _, n := range x.Proxyless {
		for _, id := range n.Identities {
			out[id] = append(out[id], n.Node)
		}
	}
	return out
}

// SocketFileMode parses xds.socket_mode (after defaults).
func (x *XDS) SocketFileMode() uint32 {
	m, err := strconv.ParseUint(x.SocketMode, 8, 32)
	if err != nil {
		m = 0o600
	}
	return uint32(m)
}

// IsUnix reports whether xds.address is a unix socket.
func (x *XDS) IsUnix() bool { return strings.HasPrefix(x.Address, "unix:") }

// defaultIdentities is ids with DNS names lower-cased (they compare
// case-insensitively), or ["dns:<node>"] when empty.
func defaultIdentities(node string, ids []string) []string {
	if len(ids) == 0 && node != "" {
		return []string{"dns:" + strings.ToLower(node)}
	}
	for i, id := range ids {
		if name, ok := strings.CutPrefix(id, "dns:"); ok {
			ids[i] = "dns:" + strings.ToLower(name)
		}
	}
	return ids
}

func (x *XDS) applySecurityDefaults() {
	setDefault(&x.SocketMode, DefaultSocketMode)
	for i := range x.Envoy {
		x.Envoy[i].Identities = defaultIdentities(x.Envoy[i].Node, x.Envoy[i].Identities)
	}
	for i := range x.Proxyless {
		x.Proxyless[i].Identities = defaultIdentities(x.Proxyless[i].Node, x.Proxyless[i].Identities)
	}
}

// isLoopback: 127.0.0.0/8, ::1 or "localhost".
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (x *XDS) validateSecurity(e *errs, nodes map[string]bool) {
	unix := x.IsUnix()
	if x.TLS != nil {
		if x.Insecure {
			e.add("xds.insecure", "contradicts xds.tls; remove one")
		}
		checkTLSFiles(e, "xds.tls", x.TLS, ": clients must present certificates signed by this CA")
		if x.TLS.ServerName != "" {
			e.add("xds.tls.server_name", "not used by the control plane (set it in xds.envoy[].xds_tls)")
		}
	} else if !unix && x.Address != "" {
		host, _, err := net.SplitHostPort(x.Address)
		switch {
		case !x.Insecure:
			e.add("xds.tls", "required for a TCP xds.address (mutual TLS; it hands out private keys); plaintext needs xds.insecure: true and a loopback address")
		case err == nil && !isLoopback(host):
			e.add("xds.address", "plaintext (xds.insecure) is only allowed on a loopback address, got %q; configure xds.tls", x.Address)
		}
	}
	if m, err := strconv.ParseUint(x.SocketMode, 8, 32); err != nil || m > 0o777 {
		e.add("xds.socket_mode", "must be an octal file mode such as \"0600\", got %q", x.SocketMode)
	} else if m&0o007 != 0 {
		e.add("xds.socket_mode", "must not grant access to others (%q); use group permissions", x.SocketMode)
	}
	seen := map[string]string{}
	check := func(f string, ids []string, node string) {
		for k, id := range ids {
			idf := fmt.Sprintf("%s.identities[%d]", f, k)
			if err := CheckIdentity(id); err != nil {
				e.add(idf, "%v", err)
				continue
			}
			if other, ok := seen[id]; ok && other != node {
				e.add(idf, "identity %q already claims node %q; one identity, one node", id, other)
			}
			seen[id] = node
		}
	}
	for i, n := range x.Envoy {
		f := fmt.Sprintf("xds.envoy[%d]", i)
		check(f, n.Identities, n.Node)
		if n.XDSTLS != nil {
			checkTLSFiles(e, f+".xds_tls", n.XDSTLS, " to verify the control plane")
		}
	}
	for i, n := range x.Proxyless {
		f := fmt.Sprintf("xds.proxyless_nodes[%d]", i)
		checkName(e, f+".node", n.Node, "node", nodes)
		check(f, n.Identities, n.Node)
	}
}
