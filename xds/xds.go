// Package xds is MeshGate's embedded xDS control plane.
//
// It is a pipeline: config (validated, defaults applied) → model
// (package xds/model, built by (*config.Config).XDSModel) → resources →
// snapshot. This package reads only the model, never the config (a test
// asserts it with go list -deps). The model and the certificate files it
// references go through the pure function Translate to per-node
// resources (listeners, routes, clusters, endpoints, SDS secrets); Server
// turns them into a versioned go-control-plane snapshot, checks it is
// Consistent, and sets it on a SnapshotCache served over ADS,
// state-of-the-world and delta, to Envoy nodes and proxyless gRPC
// clients. Bootstrap and GRPCBootstrap render client bootstraps from the
// same model; the access table (access.go) comes from its node ids and
// identities.
//
// The YAML names below (xds.cert_poll, xds.envoy[].identities, ...) are
// the config fields the model's values come from.
//
// Versions are "<process start nanos in base 36>-<counter>", fresh on every
// change and every process start, so a restarted control plane never
// announces a version Envoy already holds.
//
// Make-before-break: the cache runs in ADS mode and the server with
// ordered ADS, so one snapshot is sent clusters → endpoints → listeners →
// routes (→ secrets). That alone is not enough: Envoy may apply a route
// before a new cluster finished warming (its SDS secrets and endpoints
// arrive after it). So when an update adds or removes clusters, Update
// pushes three versions: (1) old ∪ new clusters, endpoints and secrets
// under the old listeners and routes; (2) the new listeners and routes;
// (3) the new state, dropping clusters nothing references any more. Each
// phase waits (bounded, 5s) until every connected Envoy node ACKed the
// phase's version for each resource type that changed (ACKs are tracked
// per node and type for SotW and delta streams), then a short settle. A
// phase a node rejects ends the wait at once. A node that lets a phase
// time out is "lagging": later phases and updates do not wait for it
// until it ACKs again, so one stuck client costs one phase timeout, not
// two per update. Updates that keep the set of clusters (endpoint moves,
// certificate rotation) are one snapshot.
//
// Certificates reach Envoy as SDS secrets (named by the model) built from
// the files the model names (inline bytes). Serve re-reads the files every
// xds.cert_poll; a change pushes new secrets only, so listeners and
// clusters stay and established connections are not dropped.
//
// NACKs (a DiscoveryRequest carrying error_detail) are logged once per
// rejected version, counted in meshgate_xds_nacks_total{type_url}, and
// reported by NackCheck (a readiness check) until the client ACKs a newer
// version of that type. The rejected version is not re-sent: the SotW
// snapshot cache would answer a NACK (which names the previous version)
// with the same snapshot again, so the cache is wrapped to park such a
// watch until the next snapshot. Envoy keeps serving the last config it
// accepted.
//
// Proxyless gRPC: the node ids listed in xds.proxyless_nodes share the
// snapshot keyed ProxylessNode (xds.grpc_clients): per target an
// ApiListener with an inline route configuration, an EDS cluster and its
// endpoints. It holds no secrets. Envoy endpoints must be IP literals (EDS
// does not resolve names; Envoy NACKs a name, which MeshGate reports).
//
// Access control (access.go): on TCP, ADS is mutual TLS (xds.tls; the
// files are re-read by grpc-go's pemfile provider). A stream's identities
// are its verified client certificate's URI SANs and DNS SANs ("dns:NAME"),
// recorded when the stream opens; each request's node id must be declared
// (xds.envoy or xds.proxyless_nodes) and listed for one of those
// identities (xds.envoy[].identities, default "dns:<node>"), or the stream
// is closed with PermissionDenied before the cache sees the request. So a
// client only ever receives its own node's resources and secrets.
// Refusals (failed handshakes too) are counted in
// meshgate_xds_refused_total{reason} and logged at most every 10s per
// reason. Plaintext is served only on a unix socket (mode xds.socket_mode,
// default 0600) or, with xds.insecure, on a loopback address; there any
// declared node id is accepted.
//
// Limits (limits.go): what one client may hold is bounded, so it cannot
// take what the others need: connections (MaxConnections), streams per
// connection, per certificate identity and in all, the size of a request
// and its headers, a delta stream's accumulated subscriptions, the TLS
// handshake's duration. A request for a type URL the plane does not serve
// closes its stream. Each refusal is counted like the access refusals.
package xds

import "errors"

// Errors.
var (
	// ErrNoXDS: there is no model (the config has no xds section).
	ErrNoXDS = errors.New("xds: config has no xds section")
	// ErrMissingFile: a certificate file the model references could not be read.
	ErrMissingFile = errors.New("xds: missing certificate file")
	// ErrNack: an xDS client rejected a pushed version.
	ErrNack = errors.New("xds: configuration rejected (NACK)")
	// ErrClosed: the server was closed.
	ErrClosed = errors.New("xds: server closed")
)
