// Package docker holds MeshGate's container images, compose files and
// Kubernetes + Istio manifests. There is no Docker engine on the build
// machines, so static_test.go checks them statically: every manifest parses,
// every embedded MeshGate config passes `meshgate validate`, Dockerfiles pin
// their base images and copy only paths that exist.
package docker
