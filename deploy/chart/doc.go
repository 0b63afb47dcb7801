// Package chart checks the MeshGate Helm chart (../helm/meshgate): it lints the chart with
// Helm's own linter, renders it for both modes, decodes every rendered object strictly into its
// Kubernetes, Istio or Prometheus-operator type, and parses the rendered MeshGate config with
// the product's config package.
package chart
