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
// ordered ADS, so one update is sent clusters → endpoints → listeners →
// routes (Envoy additionally pauses EDS while applying CDS and warms a
// listener until its routes and secrets arrive). A route never points at a
// cluster Envoy has not received yet.
//
// NACKs (a DiscoveryRequest carrying error_detail) are logged once per
// rejected version, counted in meshgate_xds_nacks_total{type_url}, and
// reported by NackCheck (a readiness check) until Envoy ACKs a newer
// version of that type; the rejected version is not re-sent (Envoy keeps
// serving the last config it accepted).
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
