// Package xds is MeshGate's embedded xDS control plane.
//
// It is a pipeline: a validated *config.Config (its xds section plus the
// MeshGate listeners it routes to) and the certificate files it references
// go through the pure function Translate to per-node resources (listeners,
// routes, clusters, endpoints, SDS secrets); Server turns them into a
// versioned go-control-plane snapshot, checks it is Consistent, and sets
// it on a SnapshotCache served over ADS, state-of-the-world and delta, to
// Envoy nodes and proxyless gRPC clients.
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
// phase a node rejects ends the wait at once. Updates that keep the set of
// clusters (endpoint moves, certificate rotation) are one snapshot.
//
// Certificates reach Envoy as SDS secrets built from the files named in
// the config (inline bytes). Serve re-reads the files every
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
// Proxyless gRPC: node ids not listed in xds.envoy share the snapshot
// keyed ProxylessNode (xds.grpc_clients): per target an ApiListener with
// an inline route configuration, an EDS cluster and its endpoints. Envoy
// endpoints must be IP literals (EDS does not resolve names; Envoy NACKs
// a name, which MeshGate reports).
package xds

import "errors"

// Errors.
var (
	// ErrNoXDS: the config has no xds section.
	ErrNoXDS = errors.New("xds: config has no xds section")
	// ErrMissingFile: a certificate file the config references could not be read.
	ErrMissingFile = errors.New("xds: missing certificate file")
	// ErrNack: an xDS client rejected a pushed version.
	ErrNack = errors.New("xds: configuration rejected (NACK)")
	// ErrClosed: the server was closed.
	ErrClosed = errors.New("xds: server closed")
)
