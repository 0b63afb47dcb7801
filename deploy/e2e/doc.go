// Package e2e runs MeshGate's Istio resources under a real istiod without Kubernetes:
// istiod (pilot-discovery, file config store) configures a stock Envoy as the sidecar of a
// legacy MGP client, with the MGP wasm filter loaded, in front of the real meshgate binary,
// whose gRPC upstream is resolved by istiod over xDS (xds:///) to a grpc-go service.
// The test is TestIstiod; `make istio-e2e` builds what it needs and runs it.
package e2e
