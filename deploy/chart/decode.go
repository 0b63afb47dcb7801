package chart

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	networkingv1 "istio.io/api/networking/v1"
	securityv1 "istio.io/api/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ErrDecode wraps every failure to decode a rendered object.
var ErrDecode = errors.New("chart: decode")

// Object is one rendered, strictly decoded object.
type Object struct {
	Source string // template file
	Kind   string
	Name   string
	Value  any // *appsv1.Deployment, *networkingv1.ServiceEntry, ...
}

// istioObject is the envelope of an Istio custom resource; Spec is decoded with protojson,
// which rejects unknown fields (the istio.io/client-go types accept them).
type istioObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec"`
}

// Split cuts a rendered template into YAML documents, dropping empty ones.
func Split(manifest string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+manifest, "\n---") {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// Decode decodes one YAML document strictly: unknown or misspelt fields, duplicate keys and
// unknown kinds are errors.
func Decode(doc string) (any, metav1.TypeMeta, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return nil, tm, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	var k8s any
	var spec proto.Message
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/ConfigMap":
		k8s = &corev1.ConfigMap{}
	case "v1/Service":
		k8s = &corev1.Service{}
	case "v1/ServiceAccount":
		k8s = &corev1.ServiceAccount{}
	case "apps/v1/Deployment":
		k8s = &appsv1.Deployment{}
	case "policy/v1/PodDisruptionBudget":
		k8s = &policyv1.PodDisruptionBudget{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		k8s = &monitoringv1.ServiceMonitor{}
	case "networking.istio.io/v1/ServiceEntry":
		spec = &networkingv1.ServiceEntry{}
	case "networking.istio.io/v1/WorkloadEntry":
		spec = &networkingv1.WorkloadEntry{}
	case "networking.istio.io/v1/DestinationRule":
		spec = &networkingv1.DestinationRule{}
	case "networking.istio.io/v1/Sidecar":
		spec = &networkingv1.Sidecar{}
	case "security.istio.io/v1/PeerAuthentication":
		spec = &securityv1.PeerAuthentication{}
	case "extensions.istio.io/v1alpha1/WasmPlugin":
		spec = &extensionsv1alpha1.WasmPlugin{}
	case "extensions.istio.io/v1alpha1/TrafficExtension":
		spec = &extensionsv1alpha1.TrafficExtension{}
	default:
		return nil, tm, fmt.Errorf("%w: unknown kind %s %s", ErrDecode, tm.APIVersion, tm.Kind)
	}
	if k8s != nil {
		if err := unmarshalStrict(doc, k8s); err != nil {
			return nil, tm, fmt.Errorf("%w: %s: %w", ErrDecode, tm.Kind, err)
		}
		return k8s, tm, nil
	}
	var env istioObject
	if err := unmarshalStrict(doc, &env); err != nil {
		return nil, tm, fmt.Errorf("%w: %s: %w", ErrDecode, tm.Kind, err)
	}
	if len(bytes.TrimSpace(env.Spec)) == 0 {
		return nil, tm, fmt.Errorf("%w: %s %s: no spec", ErrDecode, tm.Kind, env.Name)
	}
	if err := protojson.Unmarshal(env.Spec, spec); err != nil {
		return nil, tm, fmt.Errorf("%w: %s %s: spec: %w", ErrDecode, tm.Kind, env.Name, err)
	}
	return &IstioResource{Meta: env.ObjectMeta, Spec: spec}, tm, nil
}

// IstioResource is a decoded Istio object: its metadata and its typed spec.
type IstioResource struct {
	Meta metav1.ObjectMeta
	Spec proto.Message
}

// unmarshalStrict decodes YAML the way the API server's strict field validation does:
// duplicate keys, unknown fields and fields in the wrong case ("readOnlyRootFileSystem") are
// errors. (encoding/json alone, and so yaml.UnmarshalStrict, matches field names
// case-insensitively.)
func unmarshalStrict(doc string, v any) error {
	j, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}
