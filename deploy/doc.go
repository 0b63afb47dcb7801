// Package deploy holds MeshGate's Kubernetes + Istio deployment: the Helm chart in
// helm/meshgate and the tests that check it (chart rendering and strict decoding of every
// object; an end-to-end run of stock Envoy configured by a real istiod from the chart's Istio
// resources). It is its own Go module so that Helm, Kubernetes and Istio dependencies never
// enter the product module.
package deploy
